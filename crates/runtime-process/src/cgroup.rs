//! Control groups of instances: a group per instance under one group of
//! this server, in each v1 controller (`memory`, `pids`, `cpu`, `cpuacct`,
//! `freezer`)
//! on a v1 or hybrid host, or in the unified tree on a v2 host. On a
//! hybrid host the unified tree freezes instead of the v1 freezer: its
//! `cgroup.freeze` thaws in microseconds, where `freezer.state` took
//! about 0.8 ms here. The server
//! makes the group and writes its limits; the helper puts the instance in
//! it before it runs; the server reads its peak memory, CPU time and OOM
//! kills, and removes it once the instance is gone.

use std::path::{Path, PathBuf};

/// Where this server's instance groups live.
#[derive(Debug, Clone)]
pub(crate) enum Hierarchy {
    /// One directory per controller (v1, or the v1 half of a hybrid host).
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: PathBuf,
        cpuacct: PathBuf,
        /// The v1 freezer, or (`unified_freezer`) this server's group in
        /// the hybrid host's unified tree.
        freezer: PathBuf,
        unified_freezer: bool,
    },
    /// The unified tree (v2), with memory, pids and cpu enabled below.
    V2 { dir: PathBuf },
}

/// The limits of one instance's group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupLimits {
    pub memory_bytes: u64,
    pub pids: u32,
    /// Thousandths of a core.
    pub cpu_millis: u32,
}

/// One instance's group.
#[derive(Debug)]
pub(crate) struct Group {
    dirs: Vec<PathBuf>,
    hierarchy: Hierarchy,
    name: String,
    /// Its CPU usage file, kept open: read twice a call (an instance
    /// serving one at a time), a `pread` costs ~1 µs where opening it
    /// again (a path walk in kernfs) cost ~15 µs here. Closed before the
    /// group is removed.
    cpu_usage: std::sync::Mutex<Option<std::fs::File>>,
}

fn own_path(controller: &str) -> std::io::Result<PathBuf> {
    // /proc/self/cgroup: "ID:CONTROLLERS:PATH" (v2: "0::PATH").
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        if let (Some(controllers), Some(path)) = (controllers, path)
            && controllers.split(',').any(|name| name == controller)
        {
            return Ok(PathBuf::from(path.trim_start_matches('/')));
        }
    }
    Err(std::io::Error::other(format!(
        "this process is in no {controller} cgroup"
    )))
}

/// Removes the groups of servers that are gone (`wok-PID` with no such
/// process): a server killed outright cannot remove its own. A frozen
/// instance left in one is thawed, so that the kill it was sent ends it.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("wok-") else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let server = entry.path();
        if let Ok(instances) = std::fs::read_dir(&server) {
            for instance in instances.flatten().filter(|i| i.path().is_dir()) {
                let _ = std::fs::write(instance.path().join("freezer.state"), "THAWED");
                let _ = std::fs::write(instance.path().join("cgroup.freeze"), "0");
                let _ = std::fs::remove_dir(instance.path());
            }
        }
        let _ = std::fs::remove_dir(&server);
    }
}

/// Sets `favordynmods` on the cgroup2 mount at `mount_point`, keeping its
/// other options: moving a process into a cgroup (each instance start)
/// then no longer waits for an RCU grace period, which took 10 to 47 ms
/// here about one start in three (the kernel's lock is global: v1
/// hierarchies gain too). The price, per the kernel's documentation:
/// forks and exits cost a little more. Best effort: a host that refuses
/// keeps its mount as it was.
fn favour_dynamic_changes(mount_point: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // "ID PARENT MAJ:MIN ROOT MOUNT_POINT MOUNT_OPTIONS ... - TYPE SOURCE SUPER_OPTIONS"
    // The last mount at that point is the one seen there.
    let found = mountinfo.lines().rev().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        let fs: Vec<&str> = fs.split(' ').collect();
        (fields.get(4) == Some(&mount_point.to_str()?) && fs.first() == Some(&"cgroup2"))
            .then(|| (fields.get(5).copied(), fs.get(2).copied()))
    });
    let Some((Some(mount_options), Some(super_options))) = found else {
        return;
    };
    if super_options
        .split(',')
        .any(|option| option == "favordynmods")
    {
        return;
    }
    // A remount sets the mount's own flags anew: the same ones again.
    use nix::mount::MsFlags;
    let mut flags = MsFlags::MS_REMOUNT;
    for option in mount_options.split(',') {
        flags |= match option {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            "nosymfollow" => MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
            _ => MsFlags::empty(),
        };
    }
    let options: Vec<&str> = super_options
        .split(',')
        .filter(|option| !matches!(*option, "rw" | "ro"))
        .chain(["favordynmods"])
        .collect();
    let none: Option<&str> = None;
    match nix::mount::mount(
        none,
        mount_point,
        none,
        flags,
        Some(options.join(",").as_str()),
    ) {
        Ok(()) => tracing::info!(
            "cgroup2 at {} now favours dynamic changes (favordynmods): instance starts no longer wait for an RCU grace period",
            mount_point.display()
        ),
        Err(error) => tracing::debug!(
            "favordynmods on {}: {error} (instance starts may wait for RCU grace periods)",
            mount_point.display()
        ),
    }
}

impl Hierarchy {
    /// Makes this server's group (`name`) below its own in each controller.
    pub fn create(name: &str) -> std::io::Result<Hierarchy> {
        let base = Path::new("/sys/fs/cgroup");
        let hierarchy = if base.join("cgroup.controllers").exists() {
            favour_dynamic_changes(base);
            let own = base.join(own_path("")?);
            sweep_stale(&own);
            let dir = own.join(name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu").map_err(
                |error| {
                    std::io::Error::other(format!(
                        "enabling memory, pids and cpu below {}: {error}",
                        dir.display()
                    ))
                },
            )?;
            Hierarchy::V2 { dir }
        } else {
            let controller = |controller: &str| -> std::io::Result<PathBuf> {
                let own = base.join(controller).join(own_path(controller)?);
                sweep_stale(&own);
                let dir = own.join(name);
                std::fs::create_dir_all(&dir)?;
                Ok(dir)
            };
            let unified = || -> std::io::Result<Option<PathBuf>> {
                let root = base.join("unified");
                if !root.join("cgroup.controllers").exists() {
                    return Ok(None);
                }
                favour_dynamic_changes(&root);
                let own = root.join(own_path("")?);
                sweep_stale(&own);
                let dir = own.join(name);
                std::fs::create_dir_all(&dir)?;
                // cgroup.freeze is in every group but the root (5.2+).
                let probe = dir.join("probe");
                let _ = std::fs::create_dir(&probe);
                let freezes = probe.join("cgroup.freeze").exists();
                let _ = std::fs::remove_dir(&probe);
                if !freezes {
                    let _ = std::fs::remove_dir(&dir);
                }
                Ok(freezes.then_some(dir))
            };
            let (freezer, unified_freezer) = match unified().ok().flatten() {
                Some(dir) => (dir, true),
                None => (controller("freezer")?, false),
            };
            Hierarchy::V1 {
                memory: controller("memory")?,
                pids: controller("pids")?,
                cpu: controller("cpu")?,
                cpuacct: controller("cpuacct")?,
                freezer,
                unified_freezer,
            }
        };
        Ok(hierarchy)
    }

    fn dirs(&self) -> Vec<&Path> {
        match self {
            Hierarchy::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
                freezer,
                ..
            } => {
                let mut dirs = vec![memory.as_path(), pids, cpu, freezer];
                // cpu and cpuacct are often one mount.
                if cpuacct != cpu {
                    dirs.push(cpuacct);
                }
                dirs
            }
            Hierarchy::V2 { dir } => vec![dir.as_path()],
        }
    }

    /// Makes an instance's group with its limits.
    pub fn group(&self, name: &str, limits: GroupLimits) -> std::io::Result<Group> {
        let group = Group {
            dirs: self.dirs().into_iter().map(|dir| dir.join(name)).collect(),
            hierarchy: self.clone(),
            name: name.to_owned(),
            cpu_usage: std::sync::Mutex::new(None),
        };
        for dir in &group.dirs {
            std::fs::create_dir_all(dir)?;
        }
        let write = |file: PathBuf, value: String| {
            std::fs::write(&file, &value).map_err(|error| {
                std::io::Error::other(format!("writing {value} to {}: {error}", file.display()))
            })
        };
        // A weight in proportion to the share under contention; the share
        // itself as a cap once the instance is ready (`cap_cpu`): until
        // then it starts at full speed (a start-up boost, as Cloud Run's).
        let shares = (u64::from(limits.cpu_millis) * 1024 / 1000).max(2);
        match self {
            Hierarchy::V1 {
                memory, pids, cpu, ..
            } => {
                write(
                    memory.join(name).join("memory.limit_in_bytes"),
                    limits.memory_bytes.to_string(),
                )?;
                // No swap beyond the limit, where the kernel accounts it.
                let swap = memory.join(name).join("memory.memsw.limit_in_bytes");
                if swap.exists() {
                    write(swap, limits.memory_bytes.to_string())?;
                }
                write(pids.join(name).join("pids.max"), limits.pids.to_string())?;
                write(cpu.join(name).join("cpu.shares"), shares.to_string())?;
            }
            Hierarchy::V2 { dir } => {
                let dir = dir.join(name);
                write(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(swap, "0".to_owned())?;
                }
                write(dir.join("pids.max"), limits.pids.to_string())?;
                // cpu.weight is 1..10000, 100 for a core.
                write(
                    dir.join("cpu.weight"),
                    (shares * 100 / 1024).clamp(1, 10_000).to_string(),
                )?;
            }
        }
        let usage = match self {
            Hierarchy::V1 { cpuacct, .. } => cpuacct.join(name).join("cpuacct.usage"),
            Hierarchy::V2 { dir } => dir.join(name).join("cpu.stat"),
        };
        match std::fs::File::open(usage) {
            Ok(file) => {
                *group.cpu_usage.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
                Ok(group)
            }
            Err(error) => {
                let _ = group.remove();
                Err(error)
            }
        }
    }

    /// Removes this server's group (at shutdown; fails while any instance
    /// group is left).
    pub fn remove(&self) {
        for dir in self.dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Group {
    /// The `cgroup.procs` files the instance is put in.
    pub fn procs(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    fn read(&self, controller_dir: &Path, file: &str) -> Option<String> {
        std::fs::read_to_string(controller_dir.join(&self.name).join(file)).ok()
    }

    /// Highest memory use the instance reached, in bytes.
    pub fn peak_memory(&self) -> u64 {
        let text = match &self.hierarchy {
            Hierarchy::V1 { memory, .. } => self.read(memory, "memory.max_usage_in_bytes"),
            Hierarchy::V2 { dir } => self.read(dir, "memory.peak"),
        };
        text.and_then(|text| text.trim().parse().ok()).unwrap_or(0)
    }

    /// Caps the instance's CPU at `millis` thousandths of a core.
    pub fn cap_cpu(&self, millis: u32) -> std::io::Result<()> {
        let period = 100_000u64;
        let quota = u64::from(millis) * period / 1000;
        match &self.hierarchy {
            Hierarchy::V1 { cpu, .. } => {
                let dir = cpu.join(&self.name);
                std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string())?;
                std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())
            }
            Hierarchy::V2 { dir } => std::fs::write(
                dir.join(&self.name).join("cpu.max"),
                format!("{quota} {period}"),
            ),
        }
    }

    /// Freezes (`true`) or thaws every process of the instance: a frozen
    /// one is never scheduled, so it costs no CPU.
    pub fn set_frozen(&self, frozen: bool) -> std::io::Result<()> {
        match &self.hierarchy {
            Hierarchy::V1 {
                freezer,
                unified_freezer: false,
                ..
            } => std::fs::write(
                freezer.join(&self.name).join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Hierarchy::V1 { freezer: dir, .. } | Hierarchy::V2 { dir } => std::fs::write(
                dir.join(&self.name).join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
        }
    }

    /// CPU time the instance has used, in microseconds (`None` when the
    /// group is gone).
    pub fn cpu_micros(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buffer = [0u8; 512];
        let read = {
            let file = self.cpu_usage.lock().unwrap_or_else(|p| p.into_inner());
            file.as_ref()?.read_at(&mut buffer, 0).ok()?
        };
        let text = std::str::from_utf8(&buffer[..read]).ok()?;
        match &self.hierarchy {
            Hierarchy::V1 { .. } => text.trim().parse::<u64>().ok().map(|nanos| nanos / 1000),
            Hierarchy::V2 { .. } => field(text, "usage_usec"),
        }
    }

    /// Whether the kernel killed a process of the instance for memory.
    pub fn oom_killed(&self) -> bool {
        let text = match &self.hierarchy {
            Hierarchy::V1 { memory, .. } => self.read(memory, "memory.oom_control"),
            Hierarchy::V2 { dir } => self.read(dir, "memory.events"),
        };
        text.and_then(|text| field(&text, "oom_kill"))
            .is_some_and(|kills| kills > 0)
    }

    /// Removes the group; its processes must be gone (they may take a
    /// moment to leave after the instance's init exits).
    pub fn remove(&self) -> std::io::Result<()> {
        self.cpu_usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut result = Ok(());
        for dir in &self.dirs {
            for attempt in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                    Err(error) if attempt == 49 => result = Err(error),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
        }
        result
    }
}

/// The number after `name ` in a `key value` per line file.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}
