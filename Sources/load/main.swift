print("load: not implemented yet")
