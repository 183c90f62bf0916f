# Sidekiq reads REDIS_URL (the app secret's key, as on AWS); said here so a reader sees it.
# Debian's redis 4.8 warns about calls Debian's sidekiq 6.4 still makes: silence that noise.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
Sidekiq.configure_server { |c| c.redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/0") } }
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/0") } }
