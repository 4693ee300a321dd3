print("validate: not implemented yet")
