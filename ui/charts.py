"""Plotly settings every page's charts share."""

# Plotly's toolbar sits over a chart's title, most of all on a phone; zooming a bar chart adds nothing here.
CHART_CONFIG = {"displayModeBar": False, "responsive": True}
