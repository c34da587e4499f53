//! Shared by the integration tests.
#![allow(dead_code)]

pub mod helm;
pub mod pod_security;
