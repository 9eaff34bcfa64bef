//! provision: infrastructure as code for AWS IoT Core fleets.
//!
//! The pipeline, one module per stage: [`config`] (parse + validate) → [`desired`] (render
//! templates) → [`observed`] (read AWS through [`cloud`]) → [`plan`] (pure diff) → [`apply`]
//! (execute the plan). [`cli`] and [`commands`] are the command-line layer.

pub mod apply;
pub mod certstore;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod config;
pub mod desired;
pub mod domain;
pub mod keygen;
pub mod lint;
pub mod observed;
pub mod plan;
pub mod policy;
pub mod verify;
