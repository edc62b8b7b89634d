//! The configuration file: every validation rule with its exact message (`validation`) and
//! the shipped examples (`examples`). The environment's keys change the process's
//! environment, so they are tested in `tests/process_global/config_env.rs`.

mod examples;
mod validation;
