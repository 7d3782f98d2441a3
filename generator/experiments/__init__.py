"""A/B push experiments: assign, send, outcomes, statistics, reports, control groups and send times."""
