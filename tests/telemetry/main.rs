//! Traces and metrics of the whole network, in a test binary of its own: the OpenTelemetry
//! subscriber (with the sandbox's privacy watch beside it) is the process's global one, and a
//! global subscriber is installed once per process, before any sandbox starts.

mod collector;
mod metrics;
mod prometheus;
mod show;
mod traces;
mod visit;
