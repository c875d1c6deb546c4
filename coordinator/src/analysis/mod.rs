//! Verdicts: pure functions from a run's inside and control results to verdicts.
