#!/usr/bin/env python3
"""Layer and ownership check over `cargo metadata`.

Reads the layer table of docs/architecture.md (between the `layers begin`
and `layers end` markers) and fails when:
- a workspace crate is missing from the table;
- a crate depends (normal, build or dev) on a workspace crate of the same
  or a higher layer;
- an external dependency a crate of the table owns is a normal or build
  dependency of another workspace crate (tests may use it: a test mints a
  JWT or checks a health service with the real library).
"""

import json
import pathlib
import re
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parent.parent
doc = (root / "docs" / "architecture.md").read_text()
table = doc.split("<!-- layers begin -->")[1].split("<!-- layers end -->")[0]

layer, owner = {}, {}
for line in table.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 4 or not cells[0].isdigit():
        continue
    crate = cells[1].strip("`")
    layer[crate] = int(cells[0])
    for dep in re.findall(r"`([^`]+)`", cells[3]):
        owner[dep] = crate

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = {p["name"]: p for p in meta["packages"]}
errors = []
for name, pkg in sorted(members.items()):
    if name not in layer:
        errors.append(f"{name}: not in the layer table of docs/architecture.md")
        continue
    for dep in pkg["dependencies"]:
        d = dep["name"]
        kind = dep["kind"] or "normal"
        if d in members:
            if d in layer and layer[d] >= layer[name]:
                errors.append(
                    f"{name} (layer {layer[name]}) depends on {d} (layer {layer[d]}) [{kind}]"
                )
        elif kind != "dev" and d in owner and owner[d] != name:
            errors.append(f"{name} uses {d}, which only {owner[d]} may use [{kind}]")
for crate in layer:
    if crate not in members:
        errors.append(f"{crate}: in the layer table but not a workspace crate")

if errors:
    print("layer check failed:")
    for e in errors:
        print("  " + e)
    sys.exit(1)
print(f"layer check: {len(members)} crates, {len(owner)} owned dependencies, no violation")
