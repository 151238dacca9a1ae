"""A photo collection as a face index: clustering the faces into people, naming them."""
