"""make package: each function's zip, its size, and the size and architecture of the bootstrap
inside (cargo-lambda's zip output keeps only the zip). Fails when a zip is missing or holds
something other than an arm64 ELF `bootstrap`."""

import sys
import zipfile
from pathlib import Path

MB = 1024 * 1024
EM_AARCH64 = 183
failed = False
total = 0
for name in sys.argv[1:]:
    path = Path("target/lambda") / name / "bootstrap.zip"
    if not path.is_file():
        print(f"make package: {path} missing", file=sys.stderr)
        failed = True
        continue
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("bootstrap")
        head = z.open(info).read(20)
    arm64 = head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == EM_AARCH64
    total += path.stat().st_size
    print(f"{str(path):<52} zip {path.stat().st_size / MB:5.1f} MB   bootstrap {info.file_size / MB:5.1f} MB"
          f"   {'arm64' if arm64 else 'NOT arm64'}")
    failed |= not arm64
print(f"{len(sys.argv) - 1} functions, {total / MB:.1f} MB of zips")
sys.exit(1 if failed else 0)
