"""matplotlib for the stages' PNG plots: the file-only Agg backend, and fonts for Chinese labels.

Topic names and product names of Chinese corpora are Chinese; matplotlib's default DejaVu Sans
has no CJK glyphs and draws empty boxes. `pyplot()` puts any installed CJK font after it in the
font family, so each glyph comes from the first font that has it (matplotlib >= 3.6).
`make browser` installs one (Debian's fonts-wqy-microhei) beside Chromium.
"""

from __future__ import annotations

import functools
from pathlib import Path

CJK_FONT_HINTS = ("WenQuanYi", "Noto Sans CJK", "Noto Serif CJK", "Source Han", "Droid Sans Fallback",
                  "AR PL", "SimHei", "Microsoft YaHei", "PingFang", "Heiti")


@functools.lru_cache(maxsize=1)
def cjk_fonts() -> tuple[str, ...]:
    """Names of the installed fonts that carry Chinese characters (by family name)."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(sorted(n for n in names if any(h.lower() in n.lower() for h in CJK_FONT_HINTS)))


def pyplot():
    """matplotlib's pyplot on the Agg backend, with CJK fonts as fallbacks where installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A list of family names (not "sans-serif"): matplotlib falls back glyph by glyph along it.
    plt.rcParams["font.family"] = ["DejaVu Sans", *cjk_fonts()]
    return plt


def save(plt, fig, path: Path, dpi: int = 100) -> Path:
    """Lay out, write the PNG and free the figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
