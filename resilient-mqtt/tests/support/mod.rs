pub mod broker;
pub mod fake_broker;
pub mod proxy;
