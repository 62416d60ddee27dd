//! Live fan-out of a stream to many followers (realtime clients): one
//! reader per followed stream reads each new event from the log once and
//! broadcasts it; a follower first reads what it missed (from the position
//! it gives), then takes the broadcast. A follower that falls more than
//! the broadcast's capacity behind is told so, and must resume from its
//! last position.
//!
//! A reader wakes on its stream's change counter (`Streams`, bumped after
//! each commit that logged on the stream) and reads the log a page at a
//! time. It runs while its stream has followers: the last one to go
//! drops the feed, which aborts the reader task.
use domain::ProjectId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use store::EventStore;
use store::events::Event;
use tokio::sync::broadcast;

/// Events a stream's broadcast holds for its slowest follower.
const BROADCAST_CAPACITY: usize = 4096;
/// Events read from the log at a time.
const PAGE: u32 = 1000;

type Key = (ProjectId, String);

/// One followed stream: its reader task and its broadcast.
struct Feed {
    sender: broadcast::Sender<Arc<Event>>,
    /// Where the reader started (once it has read it): it broadcasts
    /// only what comes after, so a follower catches up to there from the
    /// log at least.
    start: tokio::sync::watch::Receiver<Option<i64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The live streams followed now.
pub struct Hub {
    store: Arc<dyn EventStore>,
    streams: Arc<crate::Streams>,
    feeds: Mutex<HashMap<Key, Weak<Feed>>>,
}

/// Why following stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("fell more than {BROADCAST_CAPACITY} events behind; resume from the last position")]
    Lagged,
    #[error("reading the event log failed: {0}")]
    Store(String),
}

/// One follower of a stream.
pub struct Follower {
    store: Arc<dyn EventStore>,
    project: ProjectId,
    stream: String,
    /// The last position handed out.
    position: i64,
    /// Read from the log, not yet handed out.
    backlog: std::collections::VecDeque<Arc<Event>>,
    /// Still reading what was missed from the log.
    catching_up: bool,
    /// Where the stream's reader started, once known.
    start: Option<i64>,
    receiver: broadcast::Receiver<Arc<Event>>,
    _feed: Arc<Feed>,
}

impl Hub {
    pub fn new(store: Arc<dyn EventStore>, streams: Arc<crate::Streams>) -> Hub {
        Hub {
            store,
            streams,
            feeds: Mutex::new(HashMap::new()),
        }
    }

    /// Follows a stream from after `after` (or from now). The position
    /// returned is where the follower starts: events after it are handed
    /// out in order, none twice.
    pub async fn follow(
        &self,
        project: &ProjectId,
        stream: &str,
        after: Option<i64>,
    ) -> Result<(Follower, i64), FollowError> {
        let feed = self.feed(project, stream);
        // Subscribe before reading the position: nothing falls in between.
        let receiver = feed.sender.subscribe();
        let position = match after {
            Some(after) => after,
            None => self
                .store
                .position_at(project, stream, i64::MAX)
                .await
                .map_err(|error| FollowError::Store(error.to_string()))?,
        };
        let follower = Follower {
            store: self.store.clone(),
            project: project.clone(),
            stream: stream.to_owned(),
            position,
            backlog: Default::default(),
            catching_up: true,
            start: None,
            receiver,
            _feed: feed,
        };
        Ok((follower, position))
    }

    /// The stream's feed, started if nobody follows it yet.
    fn feed(&self, project: &ProjectId, stream: &str) -> Arc<Feed> {
        let mut feeds = self
            .feeds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        feeds.retain(|_, feed| feed.strong_count() > 0);
        let key = (project.clone(), stream.to_owned());
        if let Some(feed) = feeds.get(&key).and_then(Weak::upgrade) {
            return feed;
        }
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (started, start) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(read_feed(
            self.store.clone(),
            self.streams.watch(project, stream),
            key.clone(),
            sender.clone(),
            started,
        ));
        let feed = Arc::new(Feed {
            sender,
            start,
            task,
        });
        feeds.insert(key, Arc::downgrade(&feed));
        feed
    }
}

/// Reads a stream's new events as they are logged and broadcasts them.
async fn read_feed(
    store: Arc<dyn EventStore>,
    mut logged: tokio::sync::watch::Receiver<u64>,
    (project, stream): Key,
    sender: broadcast::Sender<Arc<Event>>,
    started: tokio::sync::watch::Sender<Option<i64>>,
) {
    // Where the log stood when the feed started, then the last event read.
    let mut last: Option<i64> = None;
    loop {
        logged.borrow_and_update();
        let read = async {
            let after = match last {
                Some(after) => after,
                None => store.position_at(&project, &stream, i64::MAX).await?,
            };
            let events = store.events(&project, &stream, after, PAGE).await?;
            Ok::<_, store::StoreError>((after, events))
        }
        .await;
        match read {
            Ok((after, events)) => {
                if last.is_none() {
                    started.send_replace(Some(after));
                }
                let more = events.len() == PAGE as usize;
                last = Some(events.last().map_or(after, |event| event.seq));
                for event in events {
                    let _ = sender.send(Arc::new(event));
                }
                if more {
                    continue;
                }
            }
            Err(error) => {
                tracing::warn!("following {project}/{stream}: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        // Commits on the stream bump the counter: no wake-up is lost.
        if logged.changed().await.is_err() {
            break;
        }
    }
}

impl Follower {
    /// Where the stream's reader started, once it has.
    async fn feed_start(&mut self) -> Result<i64, FollowError> {
        let mut start = self._feed.start.clone();
        let value = start
            .wait_for(Option::is_some)
            .await
            .map_err(|_| FollowError::Store("the stream's reader stopped".to_owned()))?;
        Ok(value.unwrap_or_default())
    }

    /// The next event, in order; waits for one.
    pub async fn next(&mut self) -> Result<Arc<Event>, FollowError> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.position = event.seq;
                return Ok(event);
            }
            if self.catching_up {
                let events = self
                    .store
                    .events(&self.project, &self.stream, self.position, PAGE)
                    .await
                    .map_err(|error| FollowError::Store(error.to_string()))?;
                let (short, empty) = (events.len() < PAGE as usize, events.is_empty());
                self.backlog.extend(events.into_iter().map(Arc::new));
                if short {
                    // The broadcast holds what came after the reader's
                    // start: the log must have been read up to there (the
                    // reader may have started after this read, with events
                    // committed in between: then read again).
                    let read_to = self.backlog.back().map_or(self.position, |event| event.seq);
                    let done = match self.start {
                        // Known before this read: nothing more to read
                        // (pruned meanwhile) also ends it.
                        Some(start) => read_to >= start || empty,
                        None => {
                            let start = self.feed_start().await?;
                            self.start = Some(start);
                            read_to >= start
                        }
                    };
                    if done {
                        self.catching_up = false;
                    }
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(event) if event.seq <= self.position => continue,
                Ok(event) => {
                    self.position = event.seq;
                    return Ok(event);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Err(FollowError::Lagged),
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(FollowError::Store("the stream's reader stopped".to_owned()));
                }
            }
        }
    }
}
