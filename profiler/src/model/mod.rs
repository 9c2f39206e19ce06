//! The pure model: numbers read from the maps in, totals, splits, classes and names out.
pub mod charges;
pub mod histogram;
pub mod names;
pub mod overflow;
pub mod split;
pub mod store;
pub mod view;
