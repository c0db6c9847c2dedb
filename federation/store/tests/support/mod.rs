//! Helpers for the store tests.

pub(crate) mod etcd_server;
