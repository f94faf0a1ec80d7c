"""Markdown table and PNG chart of a suite's results."""

from __future__ import annotations

from pathlib import Path


def _fmt_ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f}"


def write_suite(suite: str, result: dict, out: Path) -> str:
    """Writes `<suite>.png` and returns the suite's markdown summary."""
    cases = result["cases"]
    methods = [m for m in cases[0]["times"] if not m.startswith("floor: ")]
    lines = [f"### {suite}: median ms (speed-up of linalg_core over {result['peer']})", ""]
    lines.append("| case | " + " | ".join(methods) + " | speed-up NumPy / JAX path | target |")
    lines.append("|---" * (len(methods) + 3) + "|")
    for c in cases:
        peer = result["peer"]
        r_np = c["ratios"][f"{peer} / {result['ours'][0]}"]
        r_jx = c["ratios"][f"{peer} / {result['ours'][1]}"]
        target = f">= {c['target']:g}x" if c.get("target") else "-"
        row = [c["label"], *(_fmt_ms(c["times"][m]["median_s"]) for m in methods),
               f"{r_np:.1f}x / {r_jx:.1f}x", target]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Accuracy against the float64 oracle (worst over the batch): "
              "||S - S*||_2 / ||C||_2, |rho_t - rho_t*| / ||C||_2, max|U^T U - I|.", ""]
    lines.append("| case | " + " | ".join(methods) + " |")
    lines.append("|---" * (len(methods) + 1) + "|")
    for c in cases:
        cells = [
            "{:.1e}, {:.1e}, {:.1e}".format(*(c["accuracy"][m][k] for k in ("sketch_rel_err", "rho_rel_err", "orthogonality")))
            for m in methods
        ]
        lines.append("| " + " | ".join([c["label"], *cells]) + " |")
    if any(c.get("floor_multiples") for c in cases):
        lines += ["", floor_table(cases, result["ours"])]
    if "state_bytes" in cases[0]:
        lines += ["", "| case | state bytes: " + " | ".join(cases[0]["state_bytes"]) + " |",
                  "|---" * (len(cases[0]["state_bytes"]) + 1) + "|"]
        for c in cases:
            lines.append("| " + " | ".join([c["label"], *(f"{v:,}" for v in c["state_bytes"].values())]) + " |")
    _plot(suite, result, out / f"{suite}.png")
    return "\n".join(lines)


def floor_table(cases: list, ours) -> str:
    """Markdown: each case's floor (the BLAS/LAPACK calls its algorithm cannot avoid, timed in the
    same run: bench/floor.py) and our time as a multiple of it. Where the floor calls belong to
    one method each (`bench.floor.of`), one row per case and method instead."""
    from bench.harness import floor_owner as owner

    intro = ("Floor: the unavoidable BLAS/LAPACK calls of each case, timed alone in the same run "
             "(bench/floor.py); our time as a multiple of their sum.")
    parts_of = [{n: t["median_s"] for n, t in c["times"].items() if n.startswith("floor: ")} for c in cases]
    if any(owner(n) is not None for parts in parts_of for n in parts):
        lines = [intro, "", "| case | method | floor calls | floor ms | method / floor |", "|---" * 5 + "|"]
        for c, parts in zip(cases, parts_of):
            mult = c.get("floor_multiples", {})
            for o in (o for o in ours if o in mult):
                own = {n: v for n, v in parts.items() if owner(n) in (None, o)}
                calls = ", ".join(f"{n[len('floor: '):].removeprefix(o + ': ')} {1e3 * v:.2f}"
                                  for n, v in own.items())
                lines.append(f"| {c['label']} | {o} | {calls} | {1e3 * sum(own.values()):.2f} | {mult[o]:.2f}x |")
        return "\n".join(lines)
    lines = [intro, "",
             "| case | floor calls | floor ms | " + " | ".join(f"{o} / floor" for o in ours) + " |",
             "|---" * (len(ours) + 3) + "|"]
    for c, parts in zip(cases, parts_of):
        if not parts:
            continue
        calls = ", ".join(f"{n[len('floor: '):]} {1e3 * v:.2f}" for n, v in parts.items())
        mult = c.get("floor_multiples", {})
        lines.append(f"| {c['label']} | {calls} | {1e3 * sum(parts.values()):.2f} | "
                     + " | ".join(f"{mult[o]:.2f}x" if o in mult else "-" for o in ours) + " |")
    return "\n".join(lines)


def _plot(suite: str, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = result["cases"]
    peers = [m for m in cases[0]["times"] if m not in result["ours"] and not m.startswith("floor: ")]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / (len(peers) * len(result["ours"]))
    x = np.arange(len(cases))
    k = 0
    for peer in peers:
        for ours in result["ours"]:
            vals = [c["ratios"][f"{peer} / {ours}"] for c in cases]
            ax.bar(x + k * width, vals, width, label=f"{peer} / {ours}")
            k += 1
    for i, c in enumerate(cases):
        if c.get("target"):
            ax.hlines(c["target"], i - 0.1, i + 0.9, colors="k", linestyles="dashed", linewidth=1)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x + 0.4 - width / 2, [c["label"] for c in cases], fontsize=8)
    ax.set_ylabel("speed-up (peer time / linalg_core time)")
    ax.set_title(f"{suite}: speed-up over peers, same run (dashed: target)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
