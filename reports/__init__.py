"""Rendering of what `models` computed: the model card, console tables, the backtest report, plots.

Nothing here computes a figure: it reads `models.evaluation` and `models.backtest` results and
turns them into Markdown, plain text, self-contained HTML and PNG/SVG plots (matplotlib lives
here and nowhere in `models`).

  tables    Markdown and plain-text tables (evaluation against targets, fairness, backtest)
  plots     matplotlib figures (calibration, lead time, weekly concerns, per school)
  card      models/MODEL_CARD.md and its figures
  backtest  the backtest report: Markdown and one self-contained HTML page
"""
