//! The sandbox helper: a small process (`wok` started again with
//! [`HELPER_ARG`]) that makes every instance. Forking the big server
//! would copy its page tables on each start (7 ms at 64 MiB here, 191 ms at
//! 1 GiB); the helper is a few MiB and single-threaded, so it may fork and
//! then do anything in the child.
//!
//! It reads [`SpawnRequest`]s from a `SOCK_SEQPACKET` socket on its fd 0,
//! each with the write ends of the instance's stdout, stderr and status
//! pipes attached (and the read end of its stdin, if asked): the init
//! writes the program's exit status (4 bytes) to the status pipe,
//! and answers each with a [`SpawnReply`] and, on success, a pidfd, the
//! instance's network namespace and a listener on each port asked for. When the server goes (the socket closes),
//! it kills every instance it made and exits; instances die with it too
//! (`PR_SET_PDEATHSIG`).
//!
//! An instance is made in one `clone` into new user, mount, pid, network,
//! IPC and UTS namespaces; the network one is usually made ahead (the
//! helper keeps a few spare, with their loopback up) and entered for the
//! clone. The helper maps one unprivileged uid and gid,
//! puts it in its cgroups and lets it go. The child, pid 1 of its pid
//! namespace, builds a root on a small tmpfs (the host's system
//! directories bound read-only, a few files of `/etc`, the bundle at `/app`
//! read-only, a sized tmpfs at `/tmp`, the harmless devices, its own
//! `/proc`), `pivot_root`s into it and makes it read-only, brings up
//! loopback, becomes the unprivileged user with `no_new_privs`, then forks
//! the program (which raises the last walls, `confine`: rlimits, Landlock,
//! seccomp, then execs) and stays as its init: it reaps orphans and exits
//! with the program's status, which ends the namespace.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The first argument that makes `wok` the sandbox helper.
pub const HELPER_ARG: &str = "__wok-sandbox-helper";

/// The uid and gid a program runs as inside its sandbox.
pub(crate) const INSIDE_ID: u32 = 1000;

/// Largest request the helper reads.
const MAX_REQUEST: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// Bound read-only at `/app`.
    pub app: Option<PathBuf>,
    /// An unpacked image: the root itself (read-only), instead of the
    /// host's system directories (`app`, if any, is bound at its `/app`).
    pub image_root: Option<PathBuf>,
    /// The uid and gid the program runs as inside.
    pub uid: u32,
    pub gid: u32,
    /// An empty directory of the host the new root is built on (each
    /// instance mounts over it in its own mount namespace).
    pub mount_point: PathBuf,
    /// Size of the writable `/tmp`.
    pub tmp_bytes: u64,
    /// Unprivileged uids (and gids) outside: this one is the namespace's
    /// root, which builds the sandbox; the next one runs the program.
    pub outside_id: u32,
    /// `cgroup.procs` files the instance is put in before it runs.
    pub cgroup_procs: Vec<PathBuf>,
    /// Whether a stdin fd comes with the request (else `/dev/null`).
    pub stdin: bool,
    /// Ports of the instance's loopback where the server serves the
    /// program something (the Lambda Runtime API, wok's API, the outbound
    /// proxy): the helper listens on them before the program starts and
    /// hands the listeners over with its reply.
    pub listen: Vec<u16>,
    pub hostname: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SpawnReply {
    /// The instance's pid 1 (its init), as seen by the server.
    Spawned {
        pid: i32,
    },
    Failed {
        error: String,
    },
}

/// Runs the helper on fd 0 until the server closes it. Never returns.
pub fn helper_main() -> ! {
    // SAFETY: fd 0 is the socket the server gave as stdin; nothing else
    // in this process owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(0) };
    let filters = match crate::seccomp::filters() {
        Ok(filters) => filters,
        Err(error) => fail_all(&[], &format!("building the seccomp filters: {error}")),
    };
    let home = match std::fs::File::open("/proc/self/ns/net") {
        Ok(home) => OwnedFd::from(home),
        Err(error) => fail_all(&[], &format!("its network namespace: {error}")),
    };
    let mut children: Vec<Child> = Vec::new();
    let mut spares: Vec<OwnedFd> = Vec::new();
    // Set once a spare could not be made: starts make their own then.
    let mut no_spares = false;
    let mut buffer = vec![0u8; MAX_REQUEST];
    loop {
        let mut fds = [nix::poll::PollFd::new(
            socket.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        // Short of spare network namespaces: make one once no request has
        // come for a moment (not while a start just asked for may still
        // be building its sandbox on the same CPU).
        let short = !no_spares && spares.len() < SPARE_NETWORKS;
        let wait = if short {
            nix::poll::PollTimeout::from(SPARE_AFTER_MS)
        } else {
            nix::poll::PollTimeout::from(1000u16)
        };
        let ready = nix::poll::poll(&mut fds, wait);
        reap(&mut children);
        match ready {
            Ok(0) => {
                if short {
                    match spare_network(&home) {
                        Ok(spare) => spares.push(spare),
                        // Made at spawn time instead, as without spares
                        // (never a wait that would hold a start up).
                        Err(error) => {
                            eprintln!(
                                "wok sandbox helper: no spare network namespaces ({error}): each start makes its own"
                            );
                            no_spares = true;
                        }
                    }
                }
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => fail_all(&children, &format!("poll: {error}")),
            Ok(_) => {}
        }
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut slices = [IoSliceMut::new(&mut buffer)];
        let message = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut slices,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(message) => message,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => fail_all(&children, &format!("recvmsg: {error}")),
        };
        let mut passed: Vec<OwnedFd> = Vec::new();
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    // SAFETY: the kernel just installed these fds for us.
                    passed.extend(
                        fds.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        let length = message.bytes;
        if length == 0 {
            // The server is gone: so are its instances.
            fail_all(&children, "");
        }
        let mut request_groups = Vec::new();
        let reply = match serde_json::from_slice::<SpawnRequest>(&buffer[..length]) {
            Err(error) => Err(format!("a request the helper cannot read: {error}")),
            Ok(request) if passed.len() != 3 + usize::from(request.stdin) => {
                Err("a request without its fds".to_owned())
            }
            Ok(request) => {
                request_groups = request
                    .cgroup_procs
                    .iter()
                    .filter_map(|procs| procs.parent().map(Path::to_path_buf))
                    .collect();
                let fds = Fds {
                    stdout: &passed[0],
                    stderr: &passed[1],
                    status: &passed[2],
                    stdin: passed.get(3),
                };
                let spare = spares.pop();
                // The helper's own namespace fds are not the instance's
                // to keep (its init never execs, which would close them).
                let helpers: Vec<RawFd> = spares
                    .iter()
                    .chain([&home])
                    .chain(spare.as_ref())
                    .map(AsRawFd::as_raw_fd)
                    .collect();
                spawn(&request, &filters, &fds, &home, spare, &helpers)
            }
        };
        drop(passed);
        let (reply, fds) = match reply {
            Ok((pid, mut fds)) => {
                children.push(Child {
                    pid,
                    groups: request_groups.clone(),
                });
                (SpawnReply::Spawned { pid: pid.as_raw() }, {
                    fds.shrink_to_fit();
                    fds
                })
            }
            Err(error) => (SpawnReply::Failed { error }, Vec::new()),
        };
        let bytes = serde_json::to_vec(&reply).expect("a reply serialises");
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let control = [ControlMessage::ScmRights(&raw)];
        let control: &[ControlMessage] = if raw.is_empty() { &[] } else { &control };
        if let Err(error) = sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            control,
            MsgFlags::empty(),
            None,
        ) {
            fail_all(&children, &format!("sendmsg: {error}"));
        }
    }
}

/// An instance the helper made, and its cgroups.
struct Child {
    pid: Pid,
    groups: Vec<PathBuf>,
}

/// Reaps every instance that has ended.
fn reap(children: &mut Vec<Child>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    children.retain(|child| child.pid != pid);
                }
            }
        }
    }
}

/// Kills every instance and exits (the server is gone, or the helper
/// cannot go on). A frozen instance dies only once thawed.
fn fail_all(children: &[Child], why: &str) -> ! {
    for child in children {
        let _ = nix::sys::signal::kill(child.pid, nix::sys::signal::Signal::SIGKILL);
        for group in &child.groups {
            let _ = std::fs::write(group.join("freezer.state"), "THAWED");
            let _ = std::fs::write(group.join("cgroup.freeze"), "0");
        }
    }
    if !why.is_empty() {
        eprintln!("wok sandbox helper: {why}");
    }
    std::process::exit(if why.is_empty() { 0 } else { 1 })
}

/// The pipes an instance is given.
struct Fds<'a> {
    stdout: &'a OwnedFd,
    stderr: &'a OwnedFd,
    status: &'a OwnedFd,
    stdin: Option<&'a OwnedFd>,
}

/// Most ports a request may ask to be listened on.
const MAX_LISTEN: usize = 4;

/// Network namespaces the helper keeps made ahead: making one costs about
/// 0.7 ms here (5 ms at its p99), a large part of a start.
const SPARE_NETWORKS: usize = 4;

/// Quiet time before the helper makes a spare.
const SPARE_AFTER_MS: u16 = 20;

/// A new network namespace with its loopback up, made by the helper for
/// a later instance: the helper enters it, then comes back `home`. It
/// belongs to the helper's user namespace, not the instance's, so not
/// even the instance's namespace root can change it.
fn spare_network(home: &OwnedFd) -> Result<OwnedFd, String> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
    let made = std::fs::File::open("/proc/thread-self/ns/net")
        .map(OwnedFd::from)
        .map_err(|e| format!("ns/net: {e}"))
        .and_then(|netns| loopback_up().map(|()| netns));
    if let Err(error) = nix::sched::setns(home, CloneFlags::CLONE_NEWNET) {
        // Never make an instance from inside another namespace.
        fail_all(&[], &format!("leaving a spare network namespace: {error}"));
    }
    made
}

/// Makes an instance; returns its pid and the fds for the server: its
/// pidfd, its network namespace, and a listener on each port asked for.
fn spawn(
    request: &SpawnRequest,
    filters: &[seccompiler::BpfProgram],
    fds: &Fds<'_>,
    home: &OwnedFd,
    spare: Option<OwnedFd>,
    helpers: &[RawFd],
) -> Result<(Pid, Vec<OwnedFd>), String> {
    if request.listen.len() > MAX_LISTEN {
        return Err(format!("at most {MAX_LISTEN} ports to listen on"));
    }
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let mut stack = vec![0u8; 256 << 10];
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    // A spare network namespace: the child is made inside it (it inherits
    // the helper's, for the moment of the clone); else a new one.
    let entered = match &spare {
        Some(netns) => nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).is_ok(),
        None => false,
    };
    if !entered {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let child = Box::new(|| {
        for fd in helpers {
            // SAFETY: the child's own copies of the helper's fds, which
            // nothing in the child uses.
            unsafe { libc::close(*fd) };
        }
        instance_init(request, filters, &ready_read, fds)
    });
    // SAFETY: the helper is single-threaded, so the child (a copy of it,
    // CLONE_VM not set) may allocate and call anything; the stack lives
    // until `clone` returns in the parent, and the child has its own copy.
    let cloned = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) };
    if entered && let Err(error) = nix::sched::setns(home, CloneFlags::CLONE_NEWNET) {
        fail_all(&[], &format!("leaving a spare network namespace: {error}"));
    }
    let pid = cloned.map_err(|error| format!("clone into new namespaces: {error}"))?;
    drop(ready_read);
    let release = || -> Result<Vec<OwnedFd>, String> {
        let proc = Path::new("/proc").join(pid.as_raw().to_string());
        // The namespace's root (to build the sandbox) and its user.
        let map = |id: u32| {
            let mut map = format!("0 {} 1\n", request.outside_id);
            if id != 0 {
                map.push_str(&format!("{id} {} 1\n", request.outside_id + 1));
            }
            map
        };
        std::fs::write(proc.join("uid_map"), map(request.uid))
            .map_err(|e| format!("uid_map: {e}"))?;
        std::fs::write(proc.join("setgroups"), "deny").map_err(|e| format!("setgroups: {e}"))?;
        std::fs::write(proc.join("gid_map"), map(request.gid))
            .map_err(|e| format!("gid_map: {e}"))?;
        for procs in &request.cgroup_procs {
            std::fs::write(procs, pid.as_raw().to_string())
                .map_err(|e| format!("joining cgroup {}: {e}", procs.display()))?;
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if pidfd < 0 {
            return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd from pidfd_open, owned by nobody else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        let netns: OwnedFd = std::fs::File::open(proc.join("ns/net"))
            .map_err(|e| format!("ns/net: {e}"))?
            .into();
        let listeners = listen_inside(&netns, home, &request.listen)?;
        let mut fds = vec![pidfd, netns];
        fds.extend(listeners);
        Ok(fds)
    };
    match release() {
        Ok(fds) => {
            nix::unistd::write(&ready_write, &[1]).map_err(|e| format!("release: {e}"))?;
            Ok((pid, fds))
        }
        Err(error) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            Err(error)
        }
    }
}

/// Writes a line to the instance's stderr (its log).
fn say(stderr: &OwnedFd, line: &str) {
    let mut file = std::fs::File::from(stderr.try_clone().expect("dup of stderr"));
    let _ = writeln!(file, "wok sandbox: {line}");
}

/// The instance's pid 1: waits to be released, builds the sandbox, runs
/// the program and reaps until it ends.
fn instance_init(
    request: &SpawnRequest,
    filters: &[seccompiler::BpfProgram],
    ready: &OwnedFd,
    fds: &Fds<'_>,
) -> isize {
    let stderr = fds.stderr;
    // SAFETY: prctl with an integer signal; dies with the helper.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut byte = [0u8];
    if !matches!(nix::unistd::read(ready, &mut byte), Ok(1)) {
        return 125;
    }
    if let Err(error) = build(request, stderr) {
        say(stderr, &error);
        return 126;
    }
    // The helper's socket (fd 0) and the server's own stderr (fd 2) are
    // not the program's business, nor its init's from now on.
    if let Ok(null) = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    ) {
        // SAFETY: dup2 onto fds this process owns.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(stderr.as_raw_fd(), 2);
        }
    }
    // The init is not the program's to look into (ptrace, pidfd_getfd),
    // even when both run as the namespace's root; exec makes the program
    // dumpable again for itself.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // SAFETY: this process is single-threaded (a clone of the helper).
    match unsafe { nix::unistd::fork() } {
        Err(error) => {
            say(stderr, &format!("fork: {error}"));
            125
        }
        Ok(ForkResult::Child) => {
            let error = exec(request, filters, fds);
            say(stderr, &error);
            // SAFETY: ends the forked child without running the parent's
            // exit handlers.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            let status = loop {
                match waitpid(None, None) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => break code,
                    Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                        break 128 + signal as i32;
                    }
                    Err(nix::errno::Errno::ECHILD) => break 0,
                    _ => continue,
                }
            };
            let _ = nix::unistd::write(fds.status, &status.to_le_bytes());
            status as isize
        }
    }
}

fn exec(request: &SpawnRequest, filters: &[seccompiler::BpfProgram], fds: &Fds<'_>) -> String {
    use std::ffi::CString;
    let null = match nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(null) => null,
        Err(error) => return format!("/dev/null: {error}"),
    };
    let stdin = fds.stdin.map_or(null.as_raw_fd(), AsRawFd::as_raw_fd);
    for (from, to) in [
        (stdin, 0),
        (fds.stdout.as_raw_fd(), 1),
        (fds.stderr.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 between valid fds; 0..2 are ours to replace.
        if unsafe { libc::dup2(from, to) } < 0 {
            return format!("dup2: {}", std::io::Error::last_os_error());
        }
    }
    let cstrings = |items: Vec<String>| -> Result<Vec<CString>, String> {
        items
            .into_iter()
            .map(|item| CString::new(item).map_err(|_| "a NUL in the command or env".to_owned()))
            .collect()
    };
    let argv = match cstrings(request.argv.clone()) {
        Ok(argv) if !argv.is_empty() => argv,
        Ok(_) => return "no command".to_owned(),
        Err(error) => return error,
    };
    let env = match cstrings(
        request
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
    ) {
        Ok(env) => env,
        Err(error) => return error,
    };
    if let Err(error) = confine(filters) {
        return error;
    }
    // execvpe searches the PATH of the new environment (glibc reads it from
    // the caller's environment: set it first).
    if let Some((_, path)) = request.env.iter().find(|(name, _)| name == "PATH") {
        // SAFETY: single-threaded child about to exec.
        unsafe { std::env::set_var("PATH", path) };
    }
    match nix::unistd::execvpe(&argv[0], &argv, &env) {
        Err(nix::errno::Errno::ENOENT) => format!("{}: command not found", request.argv[0]),
        Err(error) => format!("{}: {error}", request.argv[0]),
    }
}

/// The last walls, raised just before the program starts: resource
/// limits, Landlock (where the kernel has it: reads anywhere, writes only
/// under `/tmp` and to `/dev`'s devices) and the seccomp filters.
fn confine(filters: &[seccompiler::BpfProgram]) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, path_beneath_rules,
    };
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("rlimit core: {e}"))?;
    setrlimit(Resource::RLIMIT_NOFILE, 16_384, 16_384)
        .map_err(|e| format!("rlimit nofile: {e}"))?;
    let abi = ABI::V5;
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|ruleset| {
            ruleset.add_rules(path_beneath_rules(["/tmp"], AccessFs::from_all(abi)))
        })
        .and_then(|ruleset| {
            ruleset.add_rules(path_beneath_rules(
                ["/dev"],
                AccessFs::from_read(abi) | AccessFs::WriteFile,
            ))
        })
        .and_then(|ruleset| ruleset.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// The directories of the host bound read-only into every sandbox (those
/// that exist; a link, as `/bin` on merged-/usr systems, is copied as a link).
const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/// What of the host's `/etc` programs need to run (the dynamic linker's
/// cache, certificates, time zones, alternatives); the rest stays unseen.
const ETC_ENTRIES: [&str; 10] = [
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "localtime",
    "mime.types",
    "nsswitch.conf",
];

/// Something of the host to show inside, opened while this process is
/// still the helper's user (the data directory is its owner's alone; the
/// sandbox's users may not even look up its path).
enum Source {
    Dir(OwnedFd),
    File(OwnedFd),
    Link(PathBuf),
}

fn open_path(path: &Path) -> Result<OwnedFd, String> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

fn source(path: &Path) -> Result<Option<Source>, String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(None);
    };
    Ok(Some(if meta.file_type().is_symlink() {
        Source::Link(std::fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?)
    } else if meta.is_dir() {
        Source::Dir(open_path(path)?)
    } else {
        Source::File(open_path(path)?)
    }))
}

/// The path of an open fd, through which it is reached whatever the
/// permissions of the directories above it.
fn at(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Shows `source` at `inside`: a link as the same link; a directory or
/// file bound read-only, unless `writable`.
fn show(source: &Source, inside: &Path, writable: bool) -> Result<(), String> {
    let name = inside.display();
    match source {
        Source::Link(target) => {
            std::os::unix::fs::symlink(target, inside).map_err(|e| format!("{name}: {e}"))
        }
        Source::Dir(fd) | Source::File(fd) => {
            if matches!(source, Source::Dir(_)) {
                std::fs::create_dir(inside)
            } else {
                std::fs::write(inside, b"")
            }
            .map_err(|e| format!("{name}: {e}"))?;
            if writable {
                let none: Option<&str> = None;
                mount(Some(&at(fd)), inside, none, MsFlags::MS_BIND, none)
                    .map_err(|e| format!("binding {name}: {e}"))
            } else {
                bind_read_only(fd, inside)
            }
        }
    }
}

fn build(request: &SpawnRequest, stderr: &OwnedFd) -> Result<(), String> {
    let none: Option<&str> = None;
    // The server's umask keeps its data its own; the sandbox's directories
    // and files are for its unprivileged user to read.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making mounts private: {e}"))?;
    let image = request.image_root.is_some();
    if let Some(image_root) = &request.image_root {
        // The image is the root: its own /usr, /etc and all.
        mount(
            Some(image_root),
            &request.mount_point,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(|e| format!("binding the image: {e}"))?;
    } else {
        mount(
            Some("wok"),
            &request.mount_point,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            // Owned by the namespace's root, which fills it below.
            Some("size=1m,mode=0755,uid=0,gid=0"),
        )
        .map_err(|e| format!("root tmpfs: {e}"))?;
    }
    let root_fd = open_path(&request.mount_point)?;
    let mut system = Vec::new();
    let mut etc_entries = Vec::new();
    if !image {
        for dir in SYSTEM_DIRS {
            if let Some(found) = source(&Path::new("/").join(dir))? {
                system.push((dir, found));
            }
        }
        for name in ETC_ENTRIES {
            if let Some(found) = source(&Path::new("/etc").join(name))? {
                etc_entries.push((name, found));
            }
        }
    }
    let app_source = match &request.app {
        Some(app) => Some(Source::Dir(open_path(app)?)),
        None => None,
    };
    let mut devices = Vec::new();
    for name in ["null", "zero", "full", "random", "urandom"] {
        devices.push((
            name,
            Source::File(open_path(&Path::new("/dev").join(name))?),
        ));
    }
    // Become the namespace's root (mapped to an unprivileged uid outside)
    // to make the sandbox's files: the helper's own uid is not mapped.
    let root_id = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_id, root_id, root_id).map_err(|e| format!("setresgid 0: {e}"))?;
    let root_id = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root_id, root_id, root_id).map_err(|e| format!("setresuid 0: {e}"))?;
    // A change of uid makes the process undumpable, which hides its own
    // /proc/self/fd from it; the fds above are reached through it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    let root = at(&root_fd);
    if !image {
        build_host_view(&root, &system, &etc_entries, app_source.as_ref())?;
    } else if let Some(Source::Dir(app)) = &app_source {
        // A bundle on a base image: at the image's /app (made when the
        // image was unpacked).
        bind_read_only(app, &root.join("app"))?;
    }
    let tmp = root.join("tmp");
    if !image {
        std::fs::create_dir(&tmp).map_err(|e| format!("tmp: {e}"))?;
    }
    mount(
        Some("tmp"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        // Inodes bounded too: empty files cost kernel memory the memory
        // limit may not count.
        Some(
            format!(
                "size={},nr_inodes={},mode=1777",
                request.tmp_bytes.max(4096),
                (request.tmp_bytes / 8192).clamp(1024, 1 << 20)
            )
            .as_str(),
        ),
    )
    .map_err(|e| format!("/tmp tmpfs: {e}"))?;
    let dev = root.join("dev");
    if image {
        // The image's mount points were made when it was unpacked.
        for (name, found) in &devices {
            let Source::File(fd) = found else { continue };
            mount(Some(&at(fd)), &dev.join(name), none, MsFlags::MS_BIND, none)
                .map_err(|e| format!("binding dev/{name}: {e}"))?;
        }
    } else {
        std::fs::create_dir(&dev).map_err(|e| format!("dev: {e}"))?;
        for (name, found) in &devices {
            show(found, &dev.join(name), true)?;
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            std::os::unix::fs::symlink(target, dev.join(name))
                .map_err(|e| format!("dev/{name}: {e}"))?;
        }
    }
    let proc = root.join("proc");
    if !image {
        std::fs::create_dir(&proc).map_err(|e| format!("proc: {e}"))?;
    }
    if let Err(error) = mount(
        Some("proc"),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    ) {
        // A host whose /proc is partly covered (some container runtimes)
        // refuses a new one: run without it rather than not at all.
        say(stderr, &format!("no /proc in this sandbox: {error}"));
    }
    nix::unistd::fchdir(&root_fd).map_err(|e| format!("chdir root: {e}"))?;
    drop((system, etc_entries, app_source, devices, root_fd));
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the host root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    let read_only = if image {
        // A bind mount: read-only by a bind remount that keeps its flags.
        let root = open_path(Path::new("/"))?;
        remount_read_only(&root, Path::new("/"))
    } else {
        mount(
            none,
            "/",
            none,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            none,
        )
        .map_err(|e| e.to_string())
    };
    read_only.map_err(|e| format!("making the root read-only: {e}"))?;
    loopback_up()?;
    nix::unistd::sethostname(&request.hostname).map_err(|e| format!("hostname: {e}"))?;
    nix::unistd::chdir(request.cwd.as_str())
        .map_err(|e| format!("working directory {}: {e}", request.cwd))?;
    // Dropping the bounding set needs the capabilities it drops: before
    // the user changes.
    drop_bounding_set()?;
    let id = nix::unistd::Gid::from_raw(request.gid);
    nix::unistd::setresgid(id, id, id).map_err(|e| format!("setresgid: {e}"))?;
    let id = nix::unistd::Uid::from_raw(request.uid);
    nix::unistd::setresuid(id, id, id).map_err(|e| format!("setresuid: {e}"))?;
    drop_capabilities()?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Empties the bounding set, and root gets no special treatment on exec:
/// no capability can come back, even to a program that runs as its
/// namespace's root (an image's default user).
fn drop_bounding_set() -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        for capability in 0..=63 {
            if libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) != 0
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                return Err(format!(
                    "dropping capability {capability}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        // SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE(_LOCKED)
        if libc::prctl(libc::PR_SET_SECUREBITS, 0x01 | 0x02 | 0x40 | 0x80, 0, 0, 0) != 0 {
            return Err(format!("securebits: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// No capabilities now (a uid change leaves a root's in place).
fn drop_capabilities() -> Result<(), String> {
    // SAFETY: capset with structs we own.
    unsafe {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Default, Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [Data::default(); 2];
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            return Err(format!("capset: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The sandbox's view of the host: its system directories and a few files
/// of `/etc` read-only, its own `/etc` files, the bundle at `/app`.
fn build_host_view(
    root: &Path,
    system: &[(&str, Source)],
    etc_entries: &[(&str, Source)],
    app_source: Option<&Source>,
) -> Result<(), String> {
    for (dir, found) in system {
        show(found, &root.join(dir), false)?;
    }
    let etc = root.join("etc");
    std::fs::create_dir(&etc).map_err(|e| format!("etc: {e}"))?;
    for (name, found) in etc_entries {
        show(found, &etc.join(name), false)?;
    }
    for (name, text) in [
        (
            "passwd",
            "root:x:0:0:root:/:/usr/sbin/nologin\nwok:x:1000:1000:wok:/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n",
        ),
        ("group", "root:x:0:\nwok:x:1000:\nnogroup:x:65534:\n"),
        ("hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        ("hostname", "wok\n"),
        ("resolv.conf", ""),
    ] {
        std::fs::write(etc.join(name), text).map_err(|e| format!("etc/{name}: {e}"))?;
    }
    match app_source {
        Some(app) => show(app, &root.join("app"), false),
        None => std::fs::create_dir(root.join("app")).map_err(|e| format!("app: {e}")),
    }
}

/// Binds `host` at `inside`, read-only, keeping the flags the host's mount
/// has (a user namespace may not clear them).
fn bind_read_only(host: &OwnedFd, inside: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    let name = inside.display();
    mount(
        Some(&at(host)),
        inside,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|e| format!("binding {name}: {e}"))?;
    remount_read_only(host, inside)
}

/// Makes the bind mount at `inside` read-only, keeping the flags of the
/// mount `host` is on.
fn remount_read_only(host: &OwnedFd, inside: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    let name = inside.display();
    let stat = nix::sys::statvfs::fstatvfs(host).map_err(|e| format!("statvfs {name}: {e}"))?;
    let mut flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    use nix::sys::statvfs::FsFlags;
    for (has, keep) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if stat.flags().contains(has) {
            flags |= keep;
        }
    }
    mount(none, inside, none, flags, none).map_err(|e| format!("read-only {name}: {e}"))
}

/// Listeners on `ports` of the loopback of the network namespace `netns`,
/// made before the program runs (so it never finds them closed): the
/// helper enters the namespace (whose user namespace is the helper's own
/// or its child's, both within its reach), brings `lo` up, listens, and
/// comes back `home`.
fn listen_inside(netns: &OwnedFd, home: &OwnedFd, ports: &[u16]) -> Result<Vec<OwnedFd>, String> {
    if ports.is_empty() {
        return Ok(Vec::new());
    }
    let enter = |namespace: &OwnedFd| {
        nix::sched::setns(namespace, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))
    };
    enter(netns)?;
    let listeners = loopback_up().and_then(|()| {
        ports
            .iter()
            .map(|port| {
                let socket = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM.nonblocking().cloexec(),
                    None,
                )
                .map_err(|e| format!("socket: {e}"))?;
                let address = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
                socket
                    .bind(&address.into())
                    .and_then(|()| socket.listen(64))
                    .map_err(|e| format!("listening on {address}: {e}"))?;
                Ok(OwnedFd::from(socket))
            })
            .collect::<Result<Vec<_>, String>>()
    });
    if let Err(error) = enter(home) {
        // Never make another instance from inside this one's namespace.
        fail_all(
            &[],
            &format!("leaving an instance's network namespace: {error}"),
        );
    }
    listeners
}

/// Brings up `lo`, the only interface of the instance's network namespace.
fn loopback_up() -> Result<(), String> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(format!("lo flags: {}", std::io::Error::last_os_error()));
        }
        // Up already (a spare namespace, which the instance may not change).
        if request.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(format!("lo up: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// What the helper gives the server for a new instance.
pub(crate) struct Spawned {
    pub pidfd: OwnedFd,
    pub netns: OwnedFd,
    /// Listeners on the request's `listen` ports, in its order.
    pub listeners: Vec<OwnedFd>,
}

/// Sends one request to the helper and reads its reply (blocking; the
/// socket is the server's end, serialised by the caller).
pub(crate) fn call(
    socket: BorrowedFd<'_>,
    request: &SpawnRequest,
    fds: &[BorrowedFd<'_>],
) -> Result<Spawned, String> {
    let bytes = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| format!("the sandbox helper is gone: {e}"))?;
    let mut buffer = vec![0u8; 64 << 10];
    let mut space = nix::cmsg_space!([RawFd; 2 + MAX_LISTEN]);
    let mut slices = [IoSliceMut::new(&mut buffer)];
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut slices,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("the sandbox helper is gone: {e}"))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in message.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these fds for us.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let length = message.bytes;
    if length == 0 {
        return Err("the sandbox helper is gone".to_owned());
    }
    match serde_json::from_slice::<SpawnReply>(&buffer[..length]).map_err(|e| e.to_string())? {
        SpawnReply::Failed { error } => Err(error),
        SpawnReply::Spawned { .. } => {
            let mut fds = fds.into_iter();
            match (fds.next(), fds.next()) {
                (Some(pidfd), Some(netns)) if fds.len() == request.listen.len() => Ok(Spawned {
                    pidfd,
                    netns,
                    listeners: fds.collect(),
                }),
                _ => Err("the sandbox helper answered without its fds".to_owned()),
            }
        }
    }
}
