"""The sans-I/O policy core. Imports nothing but the standard library."""
