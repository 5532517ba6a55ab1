"""Native (C) reference implementations, compiled at benchmark run time."""
