//! What every component shares about the API: the table of served resources, selectors and the
//! validation rules objects follow.

pub mod pod;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod validation;
