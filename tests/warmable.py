"""A module only the test process imports: workers get it by preloading."""

VALUE = 42
