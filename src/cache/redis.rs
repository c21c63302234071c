//! The Redis backend (SPEC 5, for a fleet): written by the cache issue's Redis work.
