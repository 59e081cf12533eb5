pub use shortcut_core as core_ops;
