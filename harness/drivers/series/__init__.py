"""From a posted series to a verdict: read the series (mbox, maildir, format-patch directory or a
commit range), find its base, keep a kernel definition for it, choose what to run from what it
touches, run it with the matrix driver and write a report a developer can paste into a reply."""
