"""The DMA matrix summary: ``dma-summary.json`` and ``dma-summary.png``.

Why both: the JSON is what the nightly history and a person diffing two runs
read; the PNG (attached to the Allure report) shows at a glance where the
pool became too small: throughput per pool size, one bar per bus, coloured by
outcome, with stalls, hung loads and panics drawn as hatched stubs so "0 MiB/s" is never
mistaken for "not run".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pytest_sev.dma.classify import OUTCOMES
from pytest_sev.dma.sizes import parse_size, sort_key

JSON_NAME = "dma-summary.json"
PNG_NAME = "dma-summary.png"
BUS_ORDER = ("virtio-blk", "virtio-scsi")

OUTCOME_COLOURS = {
    "clean": "#2e7d32",
    "pressure": "#f9a825",
    "unproven": "#9e9e9e",
    "stall": "#6a1b9a",
    "hung": "#ad1457",
    "io-error": "#e65100",
    "corruption": "#c62828",
    "panic": "#212121",
}
BUS_HATCH = {"virtio-blk": "", "virtio-scsi": "//"}


@dataclass
class SizeResult:
    size: str  # PoolSize.label
    bus: str
    mode: str
    outcome: str
    reason: str
    mib_s: float | None = None
    iops: float | None = None
    full_messages: int = 0
    reported_pool_bytes: int | None = None
    peak_used_slots: int | None = None  # max io_tlb_used sampled during the load
    hiwater_slots: int | None = None  # io_tlb_used_hiwater (6.4+)
    duration_s: float | None = None
    expected: str | None = None
    verdict: str = ""
    bounce: dict | None = None  # bounce.BounceEvidence.to_json(): what proves the pool was used

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")


def _size_key(label: str) -> tuple[int, int]:
    try:
        return sort_key(parse_size(label))
    except ValueError:
        return (2, 0)


def to_json(results: list[SizeResult]) -> dict:
    ordered = sorted(results, key=lambda r: (r.mode, _size_key(r.size), r.bus))
    return {"schema": 1, "results": [asdict(r) for r in ordered]}


def from_json(data: dict) -> list[SizeResult]:
    names = {f.name for f in fields(SizeResult)}
    return [SizeResult(**{k: v for k, v in r.items() if k in names}) for r in data["results"]]


def write_json(results: list[SizeResult], directory: str | Path) -> Path:
    path = Path(directory) / JSON_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(results), indent=2) + "\n")
    return path


def write_plot(results: list[SizeResult], directory: str | Path, title: str = "SWIOTLB pool size vs virtio throughput") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(directory) / PNG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    modes = sorted({r.mode for r in results}) or ["(none)"]
    sizes = sorted({r.size for r in results}, key=_size_key)
    buses = [b for b in BUS_ORDER if any(r.bus == b for r in results)]
    buses += sorted({r.bus for r in results} - set(buses))
    top = max([r.mib_s or 0 for r in results] + [1.0])
    stub = top * 0.04  # visible height for runs with no throughput

    fig, axes = plt.subplots(len(modes), 1, figsize=(max(6.0, 1.6 * len(sizes) + 2), 3.4 * len(modes)), squeeze=False)
    width = 0.8 / max(1, len(buses))
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        by = {(r.size, r.bus): r for r in results if r.mode == mode}
        for bi, bus in enumerate(buses):
            for si, size in enumerate(sizes):
                r = by.get((size, bus))
                if r is None:
                    continue
                x = si - 0.4 + width * (bi + 0.5)
                h = r.mib_s if r.mib_s else stub
                ax.bar(
                    x, h, width * 0.92,
                    color=OUTCOME_COLOURS[r.outcome],
                    hatch=BUS_HATCH.get(bus, "..") + ("xx" if not r.mib_s else ""),
                    edgecolor="white" if r.mib_s else "black", linewidth=0.6,
                )
                label = r.outcome if not r.mib_s else f"{r.mib_s:.0f}\n{r.outcome}"
                ax.text(x, h + top * 0.02, label, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlim(-0.6, len(sizes) - 0.4)
        ax.set_ylim(0, top * 1.3)
        ax.set_ylabel("MiB/s")
        ax.set_title(f"{mode}", fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("SWIOTLB pool size")
    seen = [o for o in OUTCOMES if any(r.outcome == o for r in results)]
    handles = [Patch(facecolor=OUTCOME_COLOURS[o], label=o) for o in seen]
    handles += [Patch(facecolor="#9e9e9e", hatch=BUS_HATCH.get(b, ".."), edgecolor="white", label=b) for b in buses]
    fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=2, framealpha=0.9)
    fig.suptitle(title, fontsize=11, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93 if len(modes) == 1 else 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_summary(results: list[SizeResult], directory: str | Path) -> tuple[Path, Path]:
    """Write ``dma-summary.json`` and ``dma-summary.png`` under ``directory``."""
    return write_json(results, directory), write_plot(results, directory)
