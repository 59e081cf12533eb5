//! Command-line pieces shared by the `shortcut` subcommands.

use shortcut_runtime::{OptionsError, RunOptions};

/// How to run a model: instruction set, convolution algorithm, threads.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EngineArgs {
    /// Instruction set: scalar, avx2, avx512, neon (default: the best this CPU has; env SHORTCUT_ISA).
    #[arg(long)]
    pub isa: Option<String>,
    /// Convolution algorithm: direct, gemm, gemm-t, winograd2, winograd4, winograd6, winograd2-t,
    /// winograd4-t, auto (env SHORTCUT_CONV).
    #[arg(long)]
    pub conv: Option<String>,
    /// Layout of the activations between layers: nchw, nchw16c (channel-blocked; networks whose
    /// channel counts are multiples of 16), auto (env SHORTCUT_LAYOUT).
    #[arg(long)]
    pub layout: Option<String>,
    /// Worker threads (default: physical cores; env SHORTCUT_THREADS).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl EngineArgs {
    /// The run options these flags ask for (unset ones are resolved later from the
    /// environment and the machine).
    pub fn options(&self) -> Result<RunOptions, OptionsError> {
        Ok(RunOptions {
            isa: self.isa.as_deref().map(RunOptions::parse_isa).transpose()?,
            conv: match self.conv.as_deref() {
                Some(c) => RunOptions::parse_conv(c)?,
                None => None,
            },
            layout: match self.layout.as_deref() {
                Some(l) => RunOptions::parse_layout(l)?,
                None => None,
            },
            threads: self.threads,
        })
    }
}
