# The batchless bastion console hook, installed the documented way (infra/bastion/console_hook.rb):
# every command typed in `rails console` is written as one JSON line before it runs.
Rails.application.console { require Rails.root.join("infra/bastion/console_hook").to_s }
