"""The console's third-party JavaScript and CSS, vendored from the npm registry with pinned versions.

``python -m llmos.web.vendor`` downloads each pinned tarball and writes the files it names into
``static/vendor/`` plus ``MANIFEST.json`` (package, version, tarball, file, sha256);
``--check`` verifies the files on disk against the manifest, offline. No Node, no build step, no CDN.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
MANIFEST = VENDOR_DIR / "MANIFEST.json"


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: str
    files: dict[str, str]  # path inside the tarball -> file name in static/vendor/

    @property
    def tarball(self) -> str:
        base = self.name.rsplit("/", 1)[-1]
        return f"https://registry.npmjs.org/{self.name}/-/{base}-{self.version}.tgz"


PACKAGES = (
    Package("htmx.org", "2.0.11", {"package/dist/htmx.min.js": "htmx.min.js"}),
    Package("htmx-ext-sse", "2.2.4", {"package/dist/sse.min.js": "htmx-ext-sse.min.js"}),
    Package(
        "uplot",
        "1.6.32",
        {
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
        },
    ),
    Package(
        "swagger-ui-dist",
        "5.35.0",
        {
            "package/swagger-ui-bundle.js": "swagger-ui-bundle.js",
            "package/swagger-ui.css": "swagger-ui.css",
            "package/favicon-32x32.png": "swagger-favicon-32x32.png",
        },
    ),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(packages: tuple[Package, ...] = PACKAGES) -> list[dict[str, str]]:
    """Download every package's tarball, write its files and the manifest; returns the entries."""
    import httpx

    entries = []
    for package in packages:
        response = httpx.get(package.tarball, timeout=60, follow_redirects=True)
        response.raise_for_status()
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
            for member, target in package.files.items():
                data = archive.extractfile(member)
                if data is None:
                    raise FileNotFoundError(f"{member} is not a file in {package.tarball}")
                (VENDOR_DIR / target).write_bytes(data.read())
                entries.append(
                    {
                        "package": package.name,
                        "version": package.version,
                        "tarball": package.tarball,
                        "file": target,
                        "sha256": sha256(VENDOR_DIR / target),
                    }
                )
    MANIFEST.write_text(json.dumps({"files": entries}, indent=2) + "\n")
    return entries


def check(vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """The problems with the vendored files (missing, changed, or not in the manifest); [] if none."""
    entries = json.loads((vendor_dir / "MANIFEST.json").read_text())["files"]
    problems = []
    for entry in entries:
        path = vendor_dir / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 differs from MANIFEST.json ({entry['package']})")
    listed = {e["file"] for e in entries} | {"MANIFEST.json"}
    problems += [f"{p.name}: not in MANIFEST.json" for p in vendor_dir.iterdir() if p.name not in listed]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify the files against the manifest")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for entry in fetch():
        print(f"{entry['package']}@{entry['version']} {entry['file']} {entry['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
