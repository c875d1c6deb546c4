//! Campaign specs, run expansion and dispatch planning.
