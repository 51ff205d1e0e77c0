"""Versioned Markdown text file with a kedro-viz preview (reports, leaderboards, run cards)."""

from __future__ import annotations

import html

from kedro.io.core import get_filepath_str

from axbench_kedro.datasets.atomic import TextDataset

try:  # kedro-viz preview type (plain str at runtime)
    from kedro_datasets._typing import HTMLPreview
except ImportError:  # pragma: no cover - kedro-datasets always ships it here
    HTMLPreview = str  # type: ignore[misc,assignment]

__all__ = ["MarkdownDataset"]


class MarkdownDataset(TextDataset):
    """``text.TextDataset`` (same arguments, versioning included, saved atomically) whose kedro-viz preview shows the
    document.

    Example:
        >>> ds = MarkdownDataset(filepath="data/08_reporting/x/report.md")  # doctest: +SKIP
        >>> ds.save("# Title")  # doctest: +SKIP
    """

    def preview(self, max_chars: int = 20000) -> HTMLPreview:
        """The (latest) document as preformatted HTML for kedro-viz.

        Args:
            max_chars: characters shown at most.

        Returns:
            An HTML fragment.
        """
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(load_path, mode="r", encoding="utf-8") as handle:
            text = handle.read(max_chars + 1)
        if len(text) > max_chars:
            text = text[:max_chars] + "\n…"
        return HTMLPreview(f'<pre style="white-space: pre-wrap">{html.escape(text)}</pre>')
