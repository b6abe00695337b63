//! Builds the parts, owns every task, shuts down on signal.
