"""One module per lesson: what lesson NN computes, shows and quotes."""
