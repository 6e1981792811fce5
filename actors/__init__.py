"""The actors: thin pykka adapters around pure decision code."""
