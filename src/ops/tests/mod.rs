//! Tests of the operator commands.

mod command;
