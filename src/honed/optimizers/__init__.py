"""Teleprompters honed adds: reflection-refinement and behavior optimization, with their shared machinery."""
