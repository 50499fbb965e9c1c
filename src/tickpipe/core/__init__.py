"""The pure domain core: trade model and validation, symbols, rolling mean, signal rule. No I/O."""
