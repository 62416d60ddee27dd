//! OCI images as bundles: an archive from `docker save` (`manifest.json`),
//! an `oci-archive` or an OCI layout directory packed by the CLI
//! (`oci-layout`, `index.json`, `blobs/`). wok reads it itself: the
//! manifest for this machine's architecture, every blob's digest checked,
//! the layers applied in order with their whiteouts (`.wh.NAME` deletes,
//! `.wh..wh..opq` empties a directory), then the config's `Entrypoint`,
//! `Cmd`, `Env`, `WorkingDir` and `User`, which the deploy may override.
//! The root it makes is the sandbox's root (read-only), with the mount
//! points the sandbox needs (`/tmp`, `/proc`, `/dev`'s devices) added.

use crate::bundle::BundleError;
use sha2::Digest;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path};

/// What the image says to run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ImageConfig {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// The uid and gid inside (numeric; a name is looked up in the
    /// image's `/etc/passwd`).
    pub uid: u32,
    pub gid: u32,
}

fn invalid(message: impl Into<String>) -> BundleError {
    BundleError::Damaged(message.into())
}

/// The architecture images must be for, in OCI's words.
fn this_architecture() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// Whether an archive is an image: a tar whose top holds `oci-layout`
/// (an OCI layout) or `manifest.json` with `repositories` beside it or a
/// `blobs/` directory (what `docker save` writes). A bundle of files that
/// happens to hold a `manifest.json` or `index.json` is not one.
pub(crate) fn is_image(code: &[u8]) -> bool {
    let Ok(files) = outer_names(code) else {
        return false;
    };
    let has = |wanted: &str| files.iter().any(|name| name == wanted);
    has("oci-layout")
        || (has("manifest.json")
            && (has("repositories") || files.iter().any(|name| name.starts_with("blobs/"))))
}

fn reader(code: &[u8]) -> Box<dyn Read + '_> {
    if code.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(code))
    } else {
        Box::new(code)
    }
}

fn normal(path: &Path) -> String {
    path.components()
        .filter_map(|part| match part {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn outer_names(code: &[u8]) -> std::io::Result<Vec<String>> {
    if !(code.starts_with(&[0x1f, 0x8b]) || (code.len() > 262 && &code[257..262] == b"ustar")) {
        return Ok(Vec::new());
    }
    let mut archive = tar::Archive::new(reader(code));
    let mut names = Vec::new();
    for entry in archive.entries()? {
        names.push(normal(&entry?.path()?));
    }
    Ok(names)
}

/// The regular files of the outer archive, by path.
fn outer_files(code: &[u8], max_bytes: u64) -> Result<HashMap<String, Vec<u8>>, BundleError> {
    let mut archive = tar::Archive::new(reader(code));
    let mut files = HashMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(|e| invalid(e.to_string()))? {
        let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > max_bytes {
            return Err(BundleError::TooLarge { limit: max_bytes });
        }
        let name = normal(&entry.path().map_err(|e| invalid(e.to_string()))?);
        let mut body = Vec::new();
        entry.by_ref().take(max_bytes + 1).read_to_end(&mut body)?;
        files.insert(name, body);
    }
    Ok(files)
}

/// A blob of an OCI layout, its digest checked.
fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &str) -> Result<&'a [u8], BundleError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| invalid(format!("digest {digest:?} is not ALGORITHM:HEX")))?;
    if algorithm != "sha256" {
        return Err(invalid(format!(
            "digest {digest:?}: only sha256 is supported"
        )));
    }
    let body = files
        .get(&format!("blobs/sha256/{hex}"))
        .ok_or_else(|| invalid(format!("the image has no blob {digest}")))?;
    let actual = hex::encode(sha2::Sha256::digest(body));
    if actual != hex {
        return Err(invalid(format!(
            "blob {digest} does not match its digest (its content is sha256:{actual})"
        )));
    }
    Ok(body)
}

fn json(bytes: &[u8], what: &str) -> Result<serde_json::Value, BundleError> {
    serde_json::from_slice(bytes).map_err(|error| invalid(format!("{what}: {error}")))
}

/// The image's config and its layers (compressed or not), in order.
fn layers_and_config(
    files: &HashMap<String, Vec<u8>>,
    max_bytes: u64,
) -> Result<(serde_json::Value, Vec<Vec<u8>>), BundleError> {
    if let Some(manifest) = files.get("manifest.json") {
        // `docker save`: [{"Config": PATH, "Layers": [PATH...]}], the
        // layers checked against the config's diff_ids.
        let manifest = json(manifest, "manifest.json")?;
        let entry = &manifest[0];
        let file = |path: &serde_json::Value| -> Result<&Vec<u8>, BundleError> {
            let path = path
                .as_str()
                .ok_or_else(|| invalid("manifest.json: a path is not a string"))?;
            files.get(&normal(Path::new(path))).ok_or_else(|| {
                invalid(format!(
                    "manifest.json names {path:?}, which the archive lacks"
                ))
            })
        };
        let config = json(file(&entry["Config"])?, "the image config")?;
        let mut layers = Vec::new();
        let diff_ids = config["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (index, path) in entry["Layers"].as_array().into_iter().flatten().enumerate() {
            let layer = file(path)?.clone();
            let uncompressed = decompress(&layer, max_bytes)?;
            let actual = format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(&uncompressed))
            );
            if diff_ids.get(index).and_then(|id| id.as_str()) != Some(actual.as_str()) {
                return Err(invalid(format!(
                    "layer {index} does not match the config's diff_id (its content is {actual})"
                )));
            }
            layers.push(layer);
        }
        return Ok((config, layers));
    }
    let index = json(
        files
            .get("index.json")
            .ok_or_else(|| invalid("neither manifest.json nor index.json"))?,
        "index.json",
    )?;
    let mut manifest = pick(&index, files)?;
    // An index inside the index (a multi-platform image).
    while manifest.get("manifests").is_some() {
        manifest = pick(&manifest, files)?;
    }
    let config = json(
        blob(files, manifest["config"]["digest"].as_str().unwrap_or(""))?,
        "the image config",
    )?;
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let media = layer["mediaType"].as_str().unwrap_or("");
        if media.contains("zstd") {
            return Err(invalid(
                "zstd-compressed layers are not supported; use gzip",
            ));
        }
        layers.push(blob(files, layer["digest"].as_str().unwrap_or(""))?.to_vec());
    }
    Ok((config, layers))
}

/// The manifest of an index for this machine (or its only one).
fn pick(
    index: &serde_json::Value,
    files: &HashMap<String, Vec<u8>>,
) -> Result<serde_json::Value, BundleError> {
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let chosen = manifests
        .iter()
        .find(|manifest| manifest["platform"]["architecture"].as_str() == Some(this_architecture()))
        .or_else(|| {
            manifests
                .iter()
                .find(|manifest| manifest.get("platform").is_none())
        })
        .or(manifests.first())
        .ok_or_else(|| invalid("index.json lists no manifest"))?;
    json(
        blob(files, chosen["digest"].as_str().unwrap_or(""))?,
        "a manifest",
    )
}

/// A layer uncompressed, refused past `max_bytes` (a gzip bomb).
fn decompress(layer: &[u8], max_bytes: u64) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    reader(layer).take(max_bytes + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max_bytes {
        return Err(BundleError::TooLarge { limit: max_bytes });
    }
    Ok(out)
}

/// What is left of the bytes and entries an image may unpack to.
struct Budget {
    bytes: u64,
    entries: u64,
    limit: u64,
}

/// Applies one layer to `root`: whiteouts delete (only below real
/// directories of the root: never through a link), entries are written
/// (each checked by `unpack_in` to stay inside `root`).
fn apply(layer: &[u8], root: &Path, budget: &mut Budget) -> Result<(), BundleError> {
    let mut archive = tar::Archive::new(reader(layer));
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(|e| invalid(e.to_string()))? {
        let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| invalid(e.to_string()))?
            .into_owned();
        if path
            .components()
            .any(|part| matches!(part, Component::ParentDir))
        {
            return Err(BundleError::Escapes(path.display().to_string()));
        }
        let relative = normal(&path);
        budget.entries = budget
            .entries
            .checked_sub(1)
            .ok_or(BundleError::TooManyEntries { limit: 200_000 })?;
        budget.bytes = budget
            .bytes
            .checked_sub(entry.size())
            .ok_or(BundleError::TooLarge {
                limit: budget.limit,
            })?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        if let Some(name) = name.as_deref()
            && let Some(hidden) = name.strip_prefix(".wh.")
        {
            let parent = crate::bundle::real_dir(
                root,
                Path::new(&normal(path.parent().unwrap_or(Path::new("")))),
            )?;
            if hidden == ".wh..opq" {
                // An opaque directory: what lower layers put there is gone.
                if let Ok(children) = std::fs::read_dir(&parent) {
                    for child in children.flatten() {
                        remove(&child.path());
                    }
                }
            } else {
                remove(&parent.join(hidden));
            }
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        if relative.is_empty() {
            continue;
        }
        if !entry.unpack_in(root)? {
            return Err(BundleError::Escapes(path.display().to_string()));
        }
    }
    Ok(())
}

fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// A user (`1000`, `1000:1000`, `app`, `app:app`) as numbers, names looked
/// up in the image's own files.
fn user_ids(user: &str, root: &Path) -> Result<(u32, u32), BundleError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (user, group) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(root.join("etc").join(file)).ok()?;
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name)).then(|| {
                let id = fields.get(2)?.parse().ok()?;
                let group = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                Some((id, group))
            })?
        })
    };
    let (uid, mut gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup("passwd", user).ok_or_else(|| {
            invalid(format!(
                "the image's user {user:?} is not in its /etc/passwd"
            ))
        })?,
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("group", group).map(|(gid, _)| gid).ok_or_else(|| {
                invalid(format!(
                    "the image's group {group:?} is not in its /etc/group"
                ))
            })?,
        };
    }
    Ok((uid, gid))
}

/// Unpacks the image into `dest/rootfs` and returns what it says to run.
pub(crate) fn unpack(code: &[u8], dest: &Path, max_bytes: u64) -> Result<ImageConfig, BundleError> {
    let files = outer_files(code, max_bytes)?;
    let (config, layers) = layers_and_config(&files, max_bytes)?;
    let architecture = config["architecture"]
        .as_str()
        .unwrap_or(this_architecture());
    if architecture != this_architecture() {
        return Err(invalid(format!(
            "the image is for {architecture}; this server runs {} images",
            this_architecture()
        )));
    }
    let root = dest.join("rootfs");
    std::fs::create_dir_all(&root)?;
    let mut budget = Budget {
        bytes: max_bytes,
        entries: 200_000,
        limit: max_bytes,
    };
    for layer in &layers {
        apply(layer, &root, &mut budget)?;
    }
    // The sandbox's mount points: real directories and files of the root,
    // whatever the image had there (a link to the host's /dev is replaced,
    // never followed).
    for dir in ["tmp", "proc", "dev"] {
        let path = root.join(dir);
        if !std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
            remove(&path);
            std::fs::create_dir(&path)?;
        }
    }
    for device in ["null", "zero", "full", "random", "urandom"] {
        let path = root.join("dev").join(device);
        remove(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
    }
    crate::bundle::open_up(&root)?;
    let image = &config["config"];
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect()
    };
    let mut command = strings(&image["Entrypoint"]);
    command.extend(strings(&image["Cmd"]));
    let env = strings(&image["Env"])
        .into_iter()
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let working_dir = image["WorkingDir"]
        .as_str()
        .filter(|dir| !dir.is_empty())
        .unwrap_or("/")
        .to_owned();
    let (uid, gid) = user_ids(image["User"].as_str().unwrap_or(""), &root)?;
    if uid > 65_534 || gid > 65_534 {
        return Err(invalid(format!(
            "the image's user {uid}:{gid} is outside what a sandbox maps (0 to 65534)"
        )));
    }
    Ok(ImageConfig {
        command,
        env,
        working_dir,
        uid,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(names: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for name in names {
            let mut header = tar::Header::new_gnu();
            header.set_size(2);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &b"{}"[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_bundle_holding_a_manifest_or_an_index_is_not_an_image() {
        assert!(!is_image(&tar_of(&["index.json", "app.js"])));
        assert!(!is_image(&tar_of(&["manifest.json", "main.py"])));
        assert!(is_image(&tar_of(&["oci-layout", "index.json"])));
        assert!(is_image(&tar_of(&["manifest.json", "repositories"])));
    }
}
