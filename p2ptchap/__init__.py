"""p2ptchap: a serverless, end-to-end encrypted messenger for public-service agents."""

__version__ = "0.1.0"
