print("watch: not implemented yet")
