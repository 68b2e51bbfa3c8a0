pub mod conditions;
pub mod crd;
pub mod resources;
pub mod scaling;
