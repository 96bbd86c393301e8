//! What every component shares about the API: the table of served resources, selectors, where
//! pods may run, and the validation rules objects follow.

pub mod pod;
pub mod quantity;
pub mod resources;
pub mod scheduling;
pub mod selector;
pub mod validation;
