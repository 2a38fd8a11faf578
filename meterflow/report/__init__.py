"""The monthly report of a home: its facts from the database, and the page they make."""

from meterflow.report.facts import MonthFacts, month_facts
from meterflow.report.page import render

__all__ = ["MonthFacts", "month_facts", "render"]
