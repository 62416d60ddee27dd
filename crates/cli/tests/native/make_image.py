"""Writes an OCI image of a static server without any container tool, as
the tests need: `make_image.py OUT FORMAT SERVER [--bad-digest] [--arch A]
[--greeting G]`.
FORMAT is `oci` (an oci-archive: oci-layout, index.json, blobs/) or
`docker` (what `docker save` writes: manifest.json, config, layer tars).
Two layers: the first puts /srv/server, /srv/old.txt and /etc/passwd (user
`app`, 1234); the second deletes old.txt (a whiteout) and adds new.txt.
The config runs /srv/server as `app` in /srv with GREETING=image (or G)."""

import gzip
import hashlib
import io
import json
import sys
import tarfile


def tar_of(entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, body, mode in entries:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = mode
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def main():
    out, fmt, server = sys.argv[1], sys.argv[2], sys.argv[3]
    bad_digest = "--bad-digest" in sys.argv
    arch = sys.argv[sys.argv.index("--arch") + 1] if "--arch" in sys.argv else "amd64"
    greeting = sys.argv[sys.argv.index("--greeting") + 1] if "--greeting" in sys.argv else "image"
    with open(server, "rb") as file:
        binary = file.read()
    layers = [
        tar_of([
            ("srv/server", binary, 0o755),
            ("srv/old.txt", b"old\n", 0o644),
            ("etc/passwd", b"root:x:0:0::/:/bin/false\napp:x:1234:1234::/srv:/bin/false\n", 0o644),
        ]),
        tar_of([
            ("srv/.wh.old.txt", b"", 0o644),
            ("srv/new.txt", b"new\n", 0o644),
        ]),
    ]
    sha = lambda data: hashlib.sha256(data).hexdigest()
    config = json.dumps({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": ["/srv/server"],
            "Env": ["GREETING=" + greeting, "PATH=/srv"],
            "WorkingDir": "/srv",
            "User": "app",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer) for layer in layers]},
    }).encode()
    files = {}
    if fmt == "docker":
        files["config.json"] = config
        for index, layer in enumerate(layers):
            files[f"layer{index}/layer.tar"] = layer
        files["repositories"] = json.dumps({"probe": {"latest": sha(config)}}).encode()
        files["manifest.json"] = json.dumps([{
            "Config": "config.json",
            "RepoTags": ["probe:latest"],
            "Layers": [f"layer{index}/layer.tar" for index in range(len(layers))],
        }]).encode()
    else:
        compressed = [gzip.compress(layer) for layer in layers]
        for blob in compressed + [config]:
            files["blobs/sha256/" + sha(blob)] = blob
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + sha(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": "sha256:" + sha(blob), "size": len(blob)} for blob in compressed],
        }).encode()
        files["blobs/sha256/" + sha(manifest)] = manifest
        files["index.json"] = json.dumps({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": "sha256:" + sha(manifest), "size": len(manifest),
                           "platform": {"architecture": arch, "os": "linux"}}],
        }).encode()
        files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
        if bad_digest:
            # A layer whose content no longer matches its name.
            name = "blobs/sha256/" + sha(compressed[0])
            files[name] = gzip.compress(layers[0] + b"tampered")
    with open(out, "wb") as file:
        file.write(tar_of([(name, body, 0o644) for name, body in files.items()]))


main()
