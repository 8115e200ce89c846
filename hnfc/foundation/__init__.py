"""Foundations every layer stands on: IR types, dtype facts, outward-rounded intervals, the
frozen `Config`, and the dotted-name loader. Nothing here imports another part of hnfc."""
