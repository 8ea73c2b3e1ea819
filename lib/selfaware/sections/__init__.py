"""The logic of each book section; notebooks only hold parameters, prose and calls into these modules."""
