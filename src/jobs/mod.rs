//! The job engine (seed 001): saved jobs with a source, a destination, options and a schedule;
//! a queue scanned every few seconds that starts what is due; states READY, HOLD, ACTIVE,
//! DONE, FAILED, CANCELLED; recurring jobs rescheduled after each run; finished one-off jobs
//! kept for a while. Jobs, their states and the activity log live in the journal, so a
//! restart finds the queue as it was.
//!
//! The rules are pure ([`file`], [`schedule`], [`queue`]); [`run`] carries out one job on the
//! data plane; the service ([`crate::service`]) drives them.

pub mod calendar;
pub mod file;
pub mod queue;
pub mod run;
pub mod schedule;
