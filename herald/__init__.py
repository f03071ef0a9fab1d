"""Herald: exact, fast stream analytics for broadcast notifications."""

__version__ = "0.1.0"
