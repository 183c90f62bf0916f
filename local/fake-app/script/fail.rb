# A data-patch script that fails (the fake app's bin/rails runner exits with this code).
# fake-exit: 3
raise "patch failed on purpose"
