//! A process function's bundle: the user's files as a `.tar`, `.tar.gz` or
//! `.zip` (a Lambda deployment package), checked entry by entry and
//! unpacked into a directory of the node-local root cache. Nothing an entry says can write outside that directory: a
//! path with `..` or a root, a link that points out of the bundle, a device
//! node, or more bytes or entries than the limit refuse the whole bundle
//! before it is used.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Why a bundle cannot be used, said for its author.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is empty")]
    Empty,
    #[error(
        "the bundle is not a .tar, .tar.gz or .zip archive (deploy a directory, a .tar, a .tar.gz or a .zip)"
    )]
    NotAnArchive,
    #[error("the bundle is not a readable archive: {0}")]
    Damaged(String),
    #[error("bundle entry {0:?} escapes the bundle (an absolute path or '..')")]
    Escapes(String),
    #[error("bundle entry {entry:?} is a link to {target:?}, which is outside the bundle")]
    LinkOut { entry: String, target: String },
    #[error(
        "bundle entry {0:?} is a device, FIFO or other special file; bundles hold files, directories and links"
    )]
    Special(String),
    #[error("the bundle unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the bundle has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("unpacking the bundle failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Most entries a bundle may hold.
const MAX_ENTRIES: u64 = 200_000;

/// Unpacks `code` into `dest` (which must not exist; it is made), refusing
/// the bundle as a whole when an entry breaks a rule. Files are made
/// readable (and directories searchable) by the sandbox's unprivileged
/// user; set-id bits are dropped.
pub fn unpack(code: &[u8], dest: &Path, max_bytes: u64) -> Result<(), BundleError> {
    if code.is_empty() {
        return Err(BundleError::Empty);
    }
    if code.starts_with(b"PK\x03\x04") || code.starts_with(b"PK\x05\x06") {
        return unzip(code, dest, max_bytes);
    }
    let gzip = code.starts_with(&[0x1f, 0x8b]);
    let tar = code.len() > 262 && &code[257..262] == b"ustar";
    if !gzip && !tar {
        return Err(BundleError::NotAnArchive);
    }
    // Check every entry before writing any: a refused bundle leaves
    // nothing behind.
    check(open(code, gzip), max_bytes)?;
    std::fs::create_dir_all(dest)?;
    let mut archive = open(code, gzip);
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry.map_err(damaged)?;
        if !entry.unpack_in(dest)? {
            let path = entry.path().map_err(damaged)?.display().to_string();
            return Err(BundleError::Escapes(path));
        }
    }
    open_up(dest)?;
    Ok(())
}

fn open(code: &[u8], gzip: bool) -> tar::Archive<Box<dyn Read + '_>> {
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(code))
    } else {
        Box::new(code)
    };
    tar::Archive::new(reader)
}

fn damaged(error: std::io::Error) -> BundleError {
    BundleError::Damaged(error.to_string())
}

/// A path inside the bundle, `..` resolved; `None` when it leaves it.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn check(mut archive: tar::Archive<Box<dyn Read + '_>>, max_bytes: u64) -> Result<(), BundleError> {
    let (mut bytes, mut entries) = (0u64, 0u64);
    for entry in archive.entries().map_err(damaged)? {
        let entry = entry.map_err(damaged)?;
        let path = entry.path().map_err(damaged)?.into_owned();
        let name = path.display().to_string();
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries { limit: MAX_ENTRIES });
        }
        // The size the archive will deliver (a PAX record may say more
        // than the header).
        bytes = bytes.saturating_add(entry.size());
        if bytes > max_bytes {
            return Err(BundleError::TooLarge { limit: max_bytes });
        }
        let escapes = path.components().any(|part| {
            matches!(
                part,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
        if escapes {
            return Err(BundleError::Escapes(name));
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(damaged)?
                .map(|target| target.into_owned())
                .unwrap_or_default();
            if kind.is_symlink() {
                check_link(&path, &target)?;
            } else if inside(&target).is_none() {
                // A hard link names a path from the bundle's root.
                return Err(BundleError::LinkOut {
                    entry: name,
                    target: target.display().to_string(),
                });
            }
        } else if !(kind.is_file()
            || kind.is_dir()
            || kind.is_gnu_longname()
            || kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longlink()
            || kind == tar::EntryType::Continuous)
        {
            return Err(BundleError::Special(name));
        }
    }
    Ok(())
}

/// A link's target, checked to stay inside the bundle.
fn check_link(entry: &Path, target: &Path) -> Result<(), BundleError> {
    let resolved = target
        .is_relative()
        .then(|| entry.parent().unwrap_or(Path::new("")).join(target));
    if resolved.as_deref().and_then(inside).is_none() {
        return Err(BundleError::LinkOut {
            entry: entry.display().to_string(),
            target: target.display().to_string(),
        });
    }
    Ok(())
}

/// The directory `relative` names below `root`, made where missing, each
/// step a real directory: never a symbolic link (one the archive made
/// earlier could point anywhere on the host) nor a file.
pub(crate) fn real_dir(root: &Path, relative: &Path) -> Result<PathBuf, BundleError> {
    let mut path = root.to_path_buf();
    for part in relative.components() {
        let Component::Normal(part) = part else {
            return Err(BundleError::Escapes(relative.display().to_string()));
        };
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(BundleError::Escapes(relative.display().to_string())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&path)?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(path)
}

/// A zip (a Lambda deployment package): checked whole (names, links,
/// declared sizes), then extracted, each file cut at what is left of the
/// limit whatever its header claims. Files come first and links last, and
/// every parent is checked to be a real directory: nothing is written
/// through a link.
fn unzip(code: &[u8], dest: &Path, max_bytes: u64) -> Result<(), BundleError> {
    use std::os::unix::fs::PermissionsExt;
    let zip_error = |error: zip::result::ZipError| BundleError::Damaged(error.to_string());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(code)).map_err(zip_error)?;
    if archive.len() as u64 > MAX_ENTRIES {
        return Err(BundleError::TooManyEntries { limit: MAX_ENTRIES });
    }
    let mut entries = Vec::new();
    let mut declared = 0u64;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(zip_error)?;
        let name = file.name().map_err(zip_error)?.into_owned();
        let path = file
            .enclosed_name()
            .ok_or_else(|| BundleError::Escapes(name.clone()))?;
        declared = declared.saturating_add(file.size());
        if declared > max_bytes {
            return Err(BundleError::TooLarge { limit: max_bytes });
        }
        let mode = file.unix_mode().unwrap_or(0o644);
        let kind = mode & 0o170000;
        let link = if kind == 0o120000 {
            let mut target = String::new();
            file.by_ref().take(4096).read_to_string(&mut target)?;
            check_link(&path, Path::new(&target))?;
            Some(target)
        } else if kind != 0 && kind != 0o100000 && kind != 0o040000 {
            return Err(BundleError::Special(name));
        } else {
            None
        };
        entries.push((index, path, file.is_dir(), mode, link));
    }
    std::fs::create_dir_all(dest)?;
    let mut left = max_bytes;
    let mut links = Vec::new();
    for (index, path, is_dir, mode, link) in entries {
        if is_dir {
            real_dir(dest, &path)?;
            continue;
        }
        let parent = real_dir(dest, path.parent().unwrap_or(Path::new("")))?;
        let Some(name) = path.file_name() else {
            continue;
        };
        let target = parent.join(name);
        if let Some(link) = link {
            links.push((target, link));
            continue;
        }
        let mut file = archive.by_index(index).map_err(zip_error)?;
        // A new file: a name given twice is refused, not written through.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|error| BundleError::Damaged(format!("{}: {error}", path.display())))?;
        let written = std::io::copy(&mut file.by_ref().take(left + 1), &mut out)?;
        if written > left {
            return Err(BundleError::TooLarge { limit: max_bytes });
        }
        left -= written;
        out.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
    }
    for (target, link) in links {
        std::os::unix::fs::symlink(link, &target)?;
    }
    open_up(dest)?;
    Ok(())
}

/// Makes every file readable, every directory searchable and executables
/// runnable by anyone (the sandbox runs as an unprivileged user); drops
/// set-id bits.
pub(crate) fn open_up(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            continue;
        }
        let path = entry.path();
        let mode = entry.metadata()?.permissions().mode() & 0o777;
        let wanted = if kind.is_dir() || mode & 0o100 != 0 {
            mode | 0o555
        } else {
            mode | 0o444
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
        if kind.is_dir() {
            open_up(&path)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(add: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        add(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        // `set_path` refuses '..'; write the name raw, as a hostile tool would.
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, body).unwrap();
    }

    fn link(builder: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_entry_type(tar::EntryType::Symlink);
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.as_gnu_mut().unwrap().linkname[..target.len()].copy_from_slice(target.as_bytes());
        header.set_cksum();
        builder.append(&header, &[][..]).unwrap();
    }

    #[test]
    fn a_bundle_unpacks_readable_by_anyone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let code = archive(|builder| {
            file(builder, "app/main.py", b"print(1)");
            link(builder, "app/alias.py", "main.py");
        });
        unpack(&code, &dir.path().join("root"), 1 << 20).unwrap();
        let main = dir.path().join("root/app/main.py");
        assert_eq!(std::fs::read(&main).unwrap(), b"print(1)");
        assert_eq!(
            std::fs::metadata(&main).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("root/app/alias.py")).unwrap(),
            Path::new("main.py")
        );
    }

    #[test]
    fn entries_that_leave_the_bundle_refuse_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>); 4] = [
            ("dotdot", archive(|b| file(b, "../evil", b"x"))),
            ("absolute", archive(|b| file(b, "/etc/evil", b"x"))),
            ("link up", archive(|b| link(b, "a/up", "../../etc/passwd"))),
            ("link absolute", archive(|b| link(b, "etc", "/etc"))),
        ];
        for (case, code) in cases {
            let dest = dir.path().join(case);
            let error = unpack(&code, &dest, 1 << 20).unwrap_err();
            assert!(
                matches!(error, BundleError::Escapes(_) | BundleError::LinkOut { .. }),
                "{case}: {error}"
            );
            assert!(!dest.exists(), "{case}: a refused bundle leaves nothing");
        }
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }

    fn zip(entries: &[(&str, Option<u32>, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, mode, body) in entries {
            let options =
                zip::write::SimpleFileOptions::default().unix_permissions(mode.unwrap_or(0o644));
            if mode.is_some_and(|mode| mode & 0o170000 == 0o120000) {
                writer
                    .add_symlink(*name, std::str::from_utf8(body).unwrap(), options)
                    .unwrap();
            } else {
                writer.start_file(*name, options).unwrap();
                std::io::Write::write_all(&mut writer, body).unwrap();
            }
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_unpacks_and_one_that_leaves_the_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let code = zip(&[
            ("bootstrap", Some(0o755), b"#!/bin/sh\n"),
            ("lib/alias", Some(0o120777), b"../bootstrap"),
        ]);
        unpack(&code, &dir.path().join("ok"), 1 << 20).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("ok/bootstrap")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("ok/lib/alias")).unwrap(),
            Path::new("../bootstrap")
        );
        for (case, code) in [
            ("dotdot", zip(&[("../evil", None, b"x")])),
            (
                "link out",
                zip(&[("up", Some(0o120777), b"../../etc/passwd")]),
            ),
        ] {
            let dest = dir.path().join(case);
            let error = unpack(&code, &dest, 1 << 20).unwrap_err();
            assert!(
                matches!(error, BundleError::Escapes(_) | BundleError::LinkOut { .. }),
                "{case}: {error}"
            );
            assert!(!dest.exists(), "{case}");
        }
        // Links that resolve, on disk, through one another out of the
        // bundle; then a file through them.
        let code = zip(&[
            ("a/b/c/p", Some(0o120777), b"../../.."),
            ("q", Some(0o120777), b"a/b/c/p/../../../.."),
            ("q/planted", None, b"x"),
        ]);
        assert!(unpack(&code, &dir.path().join("chain/x"), 1 << 20).is_err());
        assert!(!dir.path().join("planted").exists());
        assert!(!dir.path().join("chain/planted").exists());
        let big = zip(&[("big", None, &[0; 4096])]);
        assert!(matches!(
            unpack(&big, &dir.path().join("big"), 1000),
            Err(BundleError::TooLarge { limit: 1000 })
        ));
    }

    #[test]
    fn what_is_not_a_tar_or_too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack(b"7z\xbc\xaf a 7z", &dir.path().join("a"), 1 << 20),
            Err(BundleError::NotAnArchive)
        ));
        let big = archive(|b| file(b, "big", &[0; 4096]));
        assert!(matches!(
            unpack(&big, &dir.path().join("b"), 1000),
            Err(BundleError::TooLarge { limit: 1000 })
        ));
    }
}
