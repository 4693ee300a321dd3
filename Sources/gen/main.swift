print("gen: not implemented yet")
