"""Dead letters: writing messages that cannot be processed aside, with their reason; reading and re-driving them."""
