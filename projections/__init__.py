"""Pure folds of events into the views clients and operators read."""
