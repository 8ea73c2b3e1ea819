"""Games two chat models play with each other (Make Me Say), and the data they produce."""
